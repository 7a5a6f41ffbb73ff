// The MIS page: what `mis infer` does, from a browser. Plain modules, no build step.
import { $, el, formatBytes, plural } from "./dom.js";
import { followLog, newSecret } from "./livelog.js";
import { summarize, summarizeZip } from "./preview.js";
import { ResultView } from "./result.js";
import { zipFiles, ZipTooLarge, fitsInZip } from "./zip.js";

const TOKEN_KEY = "mis-token"; // sessionStorage: this tab only, never in a URL
const POLL_MS = 2000;
const LOG_LINES_SHOWN = 500;

// What each error code of the API means for the person at the page, and what to do next: the
// service's error catalogue, read from its OpenAPI description. The page's own failures below.
const errorsLoaded = fetch("/openapi.json", { cache: "no-store" })
  .then((response) => response.json())
  .then((spec) => spec["x-errors"] || {})
  .catch(() => ({}));
const PAGE_ADVICE = {
  unknown: ["The service answered with an error.",
    "Try again. If it keeps happening, give the administrator the request id."],
  network: ["The service could not be reached.",
    "Check your connection and that the service is running, then try again."],
  too_large_to_zip: ["This folder is too large to zip in the browser.",
    "Zip it on your computer (4 GB or 65,535 files at most here) and choose the zip file."],
  empty: ["There is nothing to send.", "Choose a zip file, or a folder with files in it."],
};

let timeoutSeconds = 0;
let working = false;
let resultUrl = null;
let pending = null; // what "Send it" sends: { send, chooser }
let liveLog = null;
const resultView = new ResultView();

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setState(text, kind) {
  const state = $("state");
  state.textContent = text;
  state.className = `state ${kind}`;
}

function askForToken(problem) {
  const section = $("token-section");
  $("token-problem").textContent = problem || "";
  if (section.hidden) {
    section.hidden = false;
    $("token").focus();
  }
}

async function refreshStatus() {
  let response;
  try {
    response = await fetch("/v1/status", { headers: authHeaders(), cache: "no-store" });
  } catch {
    setState("Unreachable", "down");
    return;
  }
  if (response.status === 401) {
    setState("Needs a token", "down");
    const code = await response.json().then((body) => body.error.code).catch(() => "");
    askForToken(sessionStorage.getItem(TOKEN_KEY) ? (await errorsLoaded)[code]?.title : "");
    return;
  }
  if (!response.ok) {
    setState("Unavailable", "down");
    return;
  }
  const status = await response.json();
  $("token-section").hidden = true;
  timeoutSeconds = status.timeout_seconds;
  showMap(status.map);
  if (status.state === "busy" && working) setState("Busy: with your study", "busy");
  else if (status.state === "busy") {
    const elapsed = status.running.length ? ` (running for ${Math.floor(status.running[0].elapsed_seconds)} s)` : "";
    setState(`Busy with another study${elapsed}`, "busy");
  }
  else setState("Idle: ready for a study", "idle");
}

function showMap(map) {
  const rows = [
    ["Application", map.image || map.command.join(" ")],
    ["Runs as", { process: "a local process", kubernetes: "a Kubernetes Job", docker: "a container" }[map.backend] || map.backend],
    ["CPU", map.resources.cpu],
    ["Memory", map.resources.memory],
    ["GPUs", String(map.resources.gpu)],
    ["Time limit", `${map.timeout_seconds} seconds`],
  ];
  if (map.image && map.command.length) rows.splice(1, 0, ["Command", map.command.join(" ")]);
  const list = $("map-summary");
  list.replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));
}

function setWorking(on) {
  working = on;
  if (on) setState("Busy: with your study", "busy");
  for (const input of [$("zip-input"), $("folder-input")]) input.disabled = on;
  $("drop-zone").classList.toggle("disabled", on);
  $("progress-area").hidden = !on;
}

function showPhase(text, fraction) {
  $("phase").textContent = text;
  const progress = $("progress");
  if (fraction === null) progress.removeAttribute("value");
  else progress.value = fraction;
}

function showOutcome(kind, title, advice, details, requestId) {
  const box = $("outcome");
  box.className = kind;
  const parts = [];
  const heading = document.createElement("h3");
  heading.textContent = title;
  parts.push(heading);
  if (advice) {
    const p = document.createElement("p");
    p.textContent = advice;
    parts.push(p);
  }
  if (details) {
    const pre = el("pre", { tabIndex: 0, "aria-label": "Details" }, details); // it may scroll: reachable by keyboard
    parts.push(pre);
    requestAnimationFrame(() => { pre.scrollTop = pre.scrollHeight; }); // the last lines matter most
  }
  if (requestId) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = `Request id: ${requestId}`;
    parts.push(p);
  }
  box.replaceChildren(...parts);
}

// `errors`: the catalogue (errorsLoaded), for codes the service answered with
function showError(code, message, requestId, errors = {}) {
  const known = errors[code];
  const [title, advice] = known ? [known.title, known.advice] : PAGE_ADVICE[code] || PAGE_ADVICE.unknown;
  showOutcome("bad", title, advice, message, requestId);
  if (known?.status === 401) askForToken(title);
}

function clearOutcome() {
  $("outcome").replaceChildren();
  $("outcome").className = "";
  $("result").hidden = true;
  resultView.clear();
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = null;
  liveLog?.stop();
  liveLog = null;
  $("live-log").replaceChildren();
  $("log-area").hidden = true;
}

// The MAP's lines, as they come; the last LOG_LINES_SHOWN are kept on the page.
function startLiveLog(requestId, key) {
  $("log-heading").textContent = "What the application is doing";
  $("log-empty").textContent = "Waiting for the application's first message…";
  $("log-empty").hidden = false;
  $("log-area").hidden = false;
  const log = $("live-log");
  liveLog = followLog(requestId, key, authHeaders(), (text) => {
    const following = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.append(el("div", { className: "line" }, text));
    while (log.childElementCount > LOG_LINES_SHOWN) log.firstElementChild.remove();
    $("log-empty").hidden = true;
    if (following) log.scrollTop = log.scrollHeight; // unless the person scrolled up to read
  });
}

function endLiveLog() {
  $("log-heading").textContent = "What the application printed";
  if (!$("live-log").childElementCount) $("log-empty").textContent = "The application printed nothing.";
}

function outputName(inputName) {
  return `${inputName.replace(/\.zip$/i, "")}-output.zip`;
}

// Send a zip (a File, or a Blob made from a folder) and wait for the result.
function send(body, inputName) {
  const xhr = new XMLHttpRequest();
  let timer = null;
  const started = () => {
    const t0 = performance.now();
    const tick = () => {
      const elapsed = Math.floor((performance.now() - t0) / 1000);
      const of = timeoutSeconds ? ` of at most ${timeoutSeconds} s` : " s";
      showPhase(`Running the application: ${elapsed}${of}…`, timeoutSeconds ? Math.min(elapsed / timeoutSeconds, 1) : null);
    };
    tick();
    timer = setInterval(tick, 500);
  };
  const stopTimer = () => { if (timer) clearInterval(timer); timer = null; };

  // An id chosen here, so the log can be followed before the answer (and its id) comes back,
  // and a key that only this tab knows, so only it can follow it.
  const requestId = newSecret();
  const logKey = newSecret();
  xhr.open("POST", "/v1/inference");
  xhr.responseType = "blob";
  xhr.setRequestHeader("Content-Type", "application/zip");
  xhr.setRequestHeader("X-Request-ID", requestId);
  xhr.setRequestHeader("X-Log-Key", logKey);
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      showPhase(`Uploading ${inputName}: ${formatBytes(event.loaded)} of ${formatBytes(event.total)}`, event.loaded / event.total);
    }
  };
  xhr.upload.onload = () => {
    started();
    startLiveLog(requestId, logKey);
  };
  xhr.onreadystatechange = () => {
    if (xhr.readyState === XMLHttpRequest.HEADERS_RECEIVED && xhr.status === 200) {
      stopTimer();
      showPhase("Receiving the result…", null);
    }
  };
  xhr.onprogress = (event) => {
    if (xhr.status === 200) showPhase(`Receiving the result: ${formatBytes(event.loaded)}`, null);
  };
  xhr.onload = async () => {
    stopTimer();
    endLiveLog();
    try {
      await answered(xhr, requestId, inputName);
    } finally {
      finish();
    }
  };
  xhr.onerror = () => { stopTimer(); showError("network", "", null); finish(); };
  xhr.send(body);
}

async function answered(xhr, requestId, inputName) {
  const answeredId = xhr.getResponseHeader("X-Request-ID") || requestId;
  if (xhr.status !== 200) {
    let error = { code: "unknown", message: `HTTP ${xhr.status}` };
    try { error = JSON.parse(await xhr.response.text()).error; } catch { /* not JSON */ }
    const errors = await errorsLoaded;
    if (!errors[error.code]?.map_ran) { // the MAP never ran: it has no log to show
      liveLog?.stop();
      $("log-area").hidden = true;
    }
    showError(error.code, error.message, error.request_id || answeredId, errors);
    return;
  }
  performance.mark("mis-result-received");
  resultUrl = URL.createObjectURL(xhr.response);
  const link = $("download");
  link.href = resultUrl;
  link.download = outputName(inputName);
  link.textContent = `Download the result (${link.download}, ${formatBytes(xhr.response.size)})`;
  $("result").hidden = false;
  showOutcome("ok", "The result is ready.", "Its files are shown below. The service has already deleted its copy.", "", answeredId);
  await resultView.show(xhr.response);
  requestAnimationFrame(() => requestAnimationFrame(() => performance.mark("mis-result-shown")));
  link.focus();
}

function finish() {
  setWorking(false);
  refreshStatus();
}

async function start(makeBody, inputName) {
  if (working) return;
  clearOutcome();
  setWorking(true);
  try {
    send(await makeBody(), inputName);
  } catch (error) {
    setWorking(false);
    if (error instanceof ZipTooLarge) showError("too_large_to_zip", "", null);
    else showError("unknown", String(error), null);
  }
}

// Before anything is sent: what would be, and the choice to send it or not.
function confirmSending({ name, summary, note, problem, blocking, send, chooser }) {
  pending = { send, chooser };
  $("confirm-heading").textContent = `Send ${name}?`;
  $("confirm-summary").textContent = summary
    ? `${plural(summary.count, "file")}, ${formatBytes(summary.total)} in all${note || ""}.`
    : note || "";
  const folders = summary?.folders || [];
  $("confirm-folders").hidden = !folders.length;
  $("confirm-folders-body").replaceChildren(...folders.map((folder) => el("tr", {},
    el("td", {}, folder.name), el("td", { className: "number" }, folder.count.toLocaleString("en")),
    el("td", { className: "number" }, formatBytes(folder.size)))));
  $("confirm-more").textContent = summary?.more ? `… and ${plural(summary.more, "more folder")}.` : "";
  $("confirm-problem").textContent = problem || "";
  $("confirm-send").hidden = Boolean(blocking);
  $("confirm-send").textContent = `Send ${name}`;
  $("confirm").hidden = false;
  (blocking ? $("confirm-cancel") : $("confirm-send")).focus();
}

function closeConfirm() {
  const chooser = pending?.chooser;
  pending = null;
  $("confirm").hidden = true;
  return chooser;
}

$("confirm-send").addEventListener("click", () => {
  const send = pending?.send;
  closeConfirm();
  if (send) send();
});
$("confirm-cancel").addEventListener("click", () => closeConfirm()?.focus());
$("confirm").addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeConfirm()?.focus();
});

// A folder's files, paths relative to the folder; zipped while the progress bar shows it.
function chooseFolder(entries, folderName, chooser) {
  if (working) return;
  clearOutcome();
  const summary = summarize(entries.map(({ path, file }) => ({ path, size: file.size })));
  let problem = "";
  if (!entries.length) problem = `${PAGE_ADVICE.empty[0]} ${PAGE_ADVICE.empty[1]}`;
  else if (!fitsInZip(entries)) problem = `${PAGE_ADVICE.too_large_to_zip[0]} ${PAGE_ADVICE.too_large_to_zip[1]}`;
  confirmSending({
    name: `${folderName}`,
    summary,
    note: " (zipped here as it is sent)",
    problem,
    blocking: Boolean(problem),
    chooser,
    send: () => start(() => zipFiles(entries, (read, total) =>
      showPhase(`Zipping ${folderName}: ${formatBytes(read)} of ${formatBytes(total)}`, total ? read / total : null)), `${folderName}.zip`),
  });
}

async function chooseZip(file, chooser) {
  if (working) return;
  clearOutcome();
  const send = () => start(async () => file, file.name);
  try {
    const summary = await summarizeZip(file);
    confirmSending({ name: file.name, summary, note: `, in a zip of ${formatBytes(file.size)}`, chooser, send });
  } catch (error) {
    confirmSending({
      name: file.name,
      note: `A file of ${formatBytes(file.size)}.`,
      problem: `The page could not read this zip's list of files: ${error.message}. You can still send it; the service checks it.`,
      chooser,
      send,
    });
  }
}

$("zip-input").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) chooseZip(file, event.target);
  event.target.value = "";
});

$("folder-input").addEventListener("change", (event) => {
  const files = [...event.target.files];
  if (files.length) {
    const folder = files[0].webkitRelativePath.split("/")[0];
    chooseFolder(files.map((file) => ({ path: file.webkitRelativePath.split("/").slice(1).join("/"), file })), folder, event.target);
  }
  event.target.value = "";
});

const readEntries = (reader) => new Promise((resolve, reject) => reader.readEntries(resolve, reject));
const entryFile = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));

async function filesUnder(entry, prefix) {
  if (entry.isFile) return [{ path: prefix + entry.name, file: await entryFile(entry) }];
  const reader = entry.createReader();
  const found = [];
  for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
    for (const child of batch) found.push(...await filesUnder(child, `${prefix}${entry.name}/`));
  }
  return found;
}

const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", async (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  if (working) return;
  const items = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  const files = [...event.dataTransfer.files];
  if (items.length === 1 && items[0].isDirectory) {
    const entries = [];
    const reader = items[0].createReader();
    for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
      for (const child of batch) entries.push(...await filesUnder(child, ""));
    }
    chooseFolder(entries, items[0].name, $("folder-input"));
  } else if (files.length === 1 && /\.zip$/i.test(files[0].name)) {
    chooseZip(files[0], $("zip-input"));
  } else if (files.length) {
    chooseFolder(files.map((file) => ({ path: file.name, file })), "files", $("folder-input"));
  }
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  $("token-problem").textContent = "";
  refreshStatus();
});

refreshStatus();
setInterval(() => { if (!document.hidden) refreshStatus(); }, POLL_MS);
