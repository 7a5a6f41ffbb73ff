// JSON as people read it: a tree of collapsible <details> (native, so keyboard and screen
// readers work), and a table wherever a list holds flat records (objects whose values are all
// plain: text, numbers, true/false, null), such as a summary's `series`. Children of a closed
// node are built only when it is opened, so a large document costs what is looked at.

import { el, plural } from "./dom.js";

const OPEN_DEPTH = 2; // levels open at first
const OPEN_MAX_CHILDREN = 50; // a node with more starts closed
const MAX_CHILDREN = 500; // shown per node; the rest are counted
const MAX_ROWS = 500; // shown per table

const isPlain = (value) => value === null || ["string", "number", "boolean"].includes(typeof value);
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

export function isFlatRecords(value) {
  return Array.isArray(value) && value.length > 0
    && value.every((item) => isObject(item) && Object.values(item).every(isPlain));
}

function plainText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function plainElement(value) {
  const kind = value === null ? "null" : typeof value;
  const text = typeof value === "string" ? JSON.stringify(value) : String(value);
  return el("span", { className: `json-${kind}` }, text);
}

// A table of flat records: one column per key, in the order the keys first appear.
export function recordsTable(records, caption) {
  const columns = [];
  const seen = new Set();
  for (const record of records) {
    for (const key of Object.keys(record)) if (!seen.has(key)) { seen.add(key); columns.push(key); }
  }
  const shown = records.slice(0, MAX_ROWS);
  const note = records.length > shown.length ? ` (the first ${MAX_ROWS} of ${records.length.toLocaleString("en")})` : "";
  const table = el("table", { className: "records" },
    el("caption", {}, `${caption}: ${plural(records.length, "record")}${note}`),
    el("thead", {}, el("tr", {}, ...columns.map((key) => el("th", { scope: "col" }, key)))),
    el("tbody", {}, ...shown.map((record) => el("tr", {}, ...columns.map((key) => {
      const value = record[key];
      const cell = el("td", {}, key in record ? plainText(value) : "");
      if (typeof value === "number") cell.className = "number";
      return cell;
    })))));
  // wide tables scroll sideways; the region can take focus so the keyboard can scroll it too
  return el("div", { className: "table-scroll", tabIndex: 0, role: "region", "aria-label": `${caption} (table)` }, table);
}

function describe(value) {
  if (Array.isArray(value)) return value.length ? plural(value.length, "item") : "empty list";
  const keys = Object.keys(value).length;
  return keys ? plural(keys, "key") : "empty";
}

function node(key, value, depth) {
  const label = key === null ? [] : [el("span", { className: "json-key" }, key), ": "];
  if (isPlain(value)) return el("li", {}, ...label, plainElement(value));
  const children = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  if (!children.length) return el("li", {}, ...label, el("span", { className: "json-empty" }, Array.isArray(value) ? "[]" : "{}"));
  const details = el("details", {},
    el("summary", {}, ...label, el("span", { className: "json-count" }, isFlatRecords(value) ? `${plural(value.length, "record")}, as a table` : describe(value))));
  const build = () => {
    if (details.dataset.built) return;
    details.dataset.built = "1";
    if (isFlatRecords(value)) {
      details.append(recordsTable(value, key ?? "records"));
      return;
    }
    const list = el("ul", { className: "json-tree" },
      ...children.slice(0, MAX_CHILDREN).map(([k, v]) => node(k, v, depth + 1)));
    if (children.length > MAX_CHILDREN) {
      list.append(el("li", { className: "hint" }, `… and ${(children.length - MAX_CHILDREN).toLocaleString("en")} more not shown`));
    }
    details.append(list);
  };
  if (depth < OPEN_DEPTH && (children.length <= OPEN_MAX_CHILDREN || isFlatRecords(value))) {
    details.open = true;
    build();
  } else {
    details.addEventListener("toggle", build);
  }
  return el("li", {}, details);
}

export function jsonView(value) {
  return el("ul", { className: "json-tree json-root" }, node(null, value, 0));
}
