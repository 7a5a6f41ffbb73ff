// What will be sent, before it is: the number of files, their total size and the top
// folders, for a folder (from the files the browser lists) or a zip (from its central
// directory, read here; the rest of the zip is not read).

import { readListing } from "./unzip.js";

const TOP_FOLDERS_SHOWN = 8;
export const TOP_LEVEL = "(top level)";

// files: [{ path, size }] → { count, total, folders: [{ name, count, size }], more }
export function summarize(files) {
  const folders = new Map();
  let total = 0;
  for (const { path, size } of files) {
    total += size;
    const slash = path.indexOf("/");
    const name = slash < 0 ? TOP_LEVEL : path.slice(0, slash);
    const folder = folders.get(name) || { name, count: 0, size: 0 };
    folder.count++;
    folder.size += size;
    folders.set(name, folder);
  }
  const sorted = [...folders.values()].sort((a, b) => b.count - a.count || a.name.localeCompare(b.name));
  return { count: files.length, total, folders: sorted.slice(0, TOP_FOLDERS_SHOWN), more: Math.max(0, sorted.length - TOP_FOLDERS_SHOWN) };
}

export async function summarizeZip(file) {
  const entries = await readListing(file);
  return summarize(entries.map((entry) => ({ path: entry.name, size: entry.size })));
}
