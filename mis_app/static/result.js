// The result view: what is in the output zip the page already holds, read from its central
// directory, and previews made only when they come into view or are opened (images as a
// gallery, JSON as a tree and tables, text as its first 64 KB).

import { $, el, formatBytes, pagedList, plural } from "./dom.js";
import { jsonView } from "./jsonview.js";
import { entryBlob, entryBytes, readListing } from "./unzip.js";

const IMAGE_TYPES = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" };
const TEXT_EXTENSIONS = new Set(["txt", "log", "csv", "tsv", "md", "yaml", "yml", "xml", "html", "ini", "cfg", "toml", "jsonl"]);
const TEXT_LIMIT = 64 * 1024; // text previews show the start of a file
const JSON_LIMIT = 4 * 1024 * 1024; // larger JSON files show as text
const IMAGE_LIMIT = 64 * 1024 * 1024;
const GALLERY_STEP = 48;
const DOCUMENTS_STEP = 50;
const FILES_STEP = 200;
const JSON_OPEN_AT_FIRST = 3; // the first few top-level JSON files (summaries) start open

const extension = (name) => (name.match(/\.([^./]+)$/) || [])[1]?.toLowerCase() || "";
const depth = (name) => name.split("/").length;

export class ResultView {
  constructor() {
    this.urls = new Set();
    this.observer = null;
    this.images = [];
    this.thumbnails = [];
    this.archive = null;
    this.viewing = -1;
    const viewer = $("viewer");
    $("viewer-close").onclick = () => this.closeViewer();
    $("viewer-previous").onclick = () => this.view(this.viewing - 1);
    $("viewer-next").onclick = () => this.view(this.viewing + 1);
    viewer.addEventListener("keydown", (event) => {
      if (event.key === "ArrowLeft") { event.preventDefault(); this.view(this.viewing - 1); }
      if (event.key === "ArrowRight") { event.preventDefault(); this.view(this.viewing + 1); }
    });
    viewer.addEventListener("cancel", (event) => { event.preventDefault(); this.closeViewer(); }); // Escape
    viewer.addEventListener("click", (event) => { // on the backdrop, around the dialog's box
      const box = viewer.getBoundingClientRect();
      const inside = event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom;
      if (event.target === viewer && !inside) this.closeViewer();
    });
    viewer.addEventListener("close", () => { // however else it was closed
      if (this.closedHere) this.closedHere = false; // already focused: the focus may have moved on since
      else this.focusViewed();
    });
  }

  // Closed, with the focus on the image last viewed (or the last one listed, if it was
  // further on), rather than where the viewer was opened from.
  closeViewer() {
    if (!$("viewer").open) return;
    this.closedHere = true;
    $("viewer").close();
    this.focusViewed(); // at once: the "close" event comes a moment later, after keys the user may already have pressed
  }

  focusViewed() {
    (this.thumbnails[this.viewing] || this.thumbnails.at(-1))?.focus();
  }

  clear() {
    this.observer?.disconnect();
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls.clear();
    this.images = [];
    this.thumbnails = [];
    this.archive = null;
    for (const id of ["gallery", "documents", "files-body"]) $(id).replaceChildren();
    for (const id of ["gallery-area", "documents-area", "files-area"]) $(id).hidden = true;
    $("result-summary").textContent = "";
    $("result-problem").textContent = "";
  }

  // Show what `archive` (the output zip, a Blob) holds; resolves once the first screen is built.
  async show(archive) {
    this.clear();
    this.archive = archive;
    let entries;
    try {
      entries = await readListing(archive);
    } catch (error) {
      $("result-problem").textContent = `The page could not list the result's files (${error.message}). Download it to look inside.`;
      return;
    }
    const total = entries.reduce((sum, entry) => sum + entry.size, 0);
    $("result-summary").textContent = entries.length
      ? `The application wrote ${plural(entries.length, "file")}, ${formatBytes(total)} in all.`
      : "The application wrote no files.";
    this.images = entries.filter((entry) => IMAGE_TYPES[extension(entry.name)]);
    const documents = entries
      .filter((entry) => extension(entry.name) === "json" || TEXT_EXTENSIONS.has(extension(entry.name)))
      .sort((a, b) => depth(a.name) - depth(b.name) || a.name.localeCompare(b.name));
    this.showGallery();
    this.showDocuments(documents);
    this.showFiles(entries);
  }

  showGallery() {
    if (!this.images.length) return;
    $("gallery-area").hidden = false;
    $("gallery-heading").textContent = `Images (${this.images.length.toLocaleString("en")})`;
    this.observer = new IntersectionObserver((seen) => {
      for (const { isIntersecting, target } of seen) {
        if (!isIntersecting) continue;
        this.observer.unobserve(target);
        this.loadThumbnail(target);
      }
    }, { rootMargin: "200px" });
    pagedList($("gallery"), $("gallery-more"), this.images, GALLERY_STEP, (entry, index) => {
      const image = el("img", { alt: "", decoding: "async" });
      const button = el("button", { type: "button", className: "thumbnail", "aria-label": `${entry.name}: enlarge` },
        image, el("span", { className: "name" }, entry.name));
      button.dataset.index = index;
      button.onclick = () => this.view(index);
      this.thumbnails[index] = button;
      this.observer.observe(button);
      return el("li", {}, button);
    }, "image");
  }

  async imageUrl(index) {
    const entry = this.images[index];
    if (entry.url) return entry.url;
    if (entry.size > IMAGE_LIMIT) throw new Error(`too large to show here (${formatBytes(entry.size)})`);
    entry.url = URL.createObjectURL(await entryBlob(this.archive, entry, IMAGE_TYPES[extension(entry.name)]));
    this.urls.add(entry.url);
    return entry.url;
  }

  async loadThumbnail(button) {
    const image = button.querySelector("img");
    try {
      image.src = await this.imageUrl(Number(button.dataset.index));
      await image.decode();
    } catch (error) {
      image.replaceWith(el("span", { className: "unshown" }, "Cannot show this image"));
    }
  }

  async view(index) {
    if (index < 0 || index >= this.images.length) return;
    this.viewing = index;
    const viewer = $("viewer");
    const image = $("viewer-image");
    const entry = this.images[index];
    $("viewer-name").textContent = entry.name;
    $("viewer-position").textContent = `Image ${index + 1} of ${this.images.length}, ${formatBytes(entry.size)}`;
    $("viewer-previous").disabled = index === 0;
    $("viewer-next").disabled = index === this.images.length - 1;
    $("viewer-problem").textContent = "";
    image.removeAttribute("src");
    image.alt = entry.name;
    if (!viewer.open) viewer.showModal();
    if (document.activeElement?.disabled || !viewer.contains(document.activeElement)) $("viewer-close").focus();
    try {
      const url = await this.imageUrl(index);
      if (this.viewing !== index) return;
      image.src = url;
      await image.decode();
      image.classList.toggle("small", image.naturalWidth < 512 && image.naturalHeight < 512);
    } catch (error) {
      if (this.viewing === index) $("viewer-problem").textContent = `Cannot show this image: ${error.message || "it could not be decoded"}.`;
    }
  }

  showDocuments(documents) {
    if (!documents.length) return;
    $("documents-area").hidden = false;
    $("documents-heading").textContent = `Data and text (${documents.length.toLocaleString("en")})`;
    let opened = 0;
    pagedList($("documents"), $("documents-more"), documents, DOCUMENTS_STEP, (entry) => {
      const body = el("div", { className: "document-body" });
      const details = el("details", { className: "document" },
        el("summary", {}, el("span", { className: "name" }, entry.name), " ", el("span", { className: "hint" }, formatBytes(entry.size))),
        body);
      const show = () => {
        if (details.open && !body.dataset.shown) {
          body.dataset.shown = "1";
          this.preview(entry, body);
        }
      };
      details.addEventListener("toggle", show);
      const json = extension(entry.name) === "json";
      if (json && depth(entry.name) <= 2 && entry.size <= JSON_LIMIT && opened < JSON_OPEN_AT_FIRST) {
        opened++;
        details.open = true;
        show();
      }
      return details;
    }, "file");
  }

  async preview(entry, body) {
    body.replaceChildren(el("p", { className: "hint" }, "Reading…"));
    try {
      if (extension(entry.name) === "json" && entry.size <= JSON_LIMIT) {
        const { bytes } = await entryBytes(this.archive, entry, entry.size);
        let value;
        try {
          value = JSON.parse(new TextDecoder().decode(bytes));
        } catch {
          return this.previewText(entry, body, "It is not valid JSON; here is its text.");
        }
        body.replaceChildren(jsonView(value));
        return;
      }
      await this.previewText(entry, body, "");
    } catch (error) {
      body.replaceChildren(el("p", { className: "problem" }, `Cannot show this file: ${error.message}.`));
    }
  }

  async previewText(entry, body, note) {
    const { bytes, truncated } = await entryBytes(this.archive, entry, TEXT_LIMIT);
    const text = new TextDecoder().decode(bytes);
    const parts = [];
    if (note) parts.push(el("p", { className: "hint" }, note));
    parts.push(el("pre", { className: "text-preview", tabIndex: 0, "aria-label": `${entry.name} (text)` }, text));
    if (truncated) parts.push(el("p", { className: "hint" }, `The first ${formatBytes(TEXT_LIMIT)} of ${formatBytes(entry.size)}; download the result for the rest.`));
    body.replaceChildren(...parts);
  }

  showFiles(entries) {
    if (!entries.length) return;
    $("files-area").hidden = false;
    $("files-heading").textContent = `All files (${entries.length.toLocaleString("en")})`;
    pagedList($("files-body"), $("files-more"), entries, FILES_STEP,
      (entry) => el("tr", {}, el("td", { className: "name" }, entry.name), el("td", { className: "number" }, formatBytes(entry.size))),
      "file");
  }
}
