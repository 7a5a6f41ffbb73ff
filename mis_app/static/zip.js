// A zip of many files, made in the browser without holding their contents in memory.
//
// Entries are stored (not compressed: DICOM pixel data hardly compresses, and MIS unpacks it at
// once). Each file is read once, as a stream, for its CRC-32; the zip is then a Blob whose
// parts are the headers and the File objects themselves, which the browser reads again while
// it uploads. Names are UTF-8 (flag bit 11). Limits of the classic format apply: below 4 GiB
// in all and 65,535 entries; past them the user is asked to zip the folder themselves.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

const LIMIT = 0xffffffff;
const DOS_DATE_1980_01_01 = (1 << 5) | 1;
const UTF8_NAMES = 0x0800;

export class ZipTooLarge extends Error {}

async function crc32(file, onBytes) {
  let crc = 0xffffffff;
  const reader = file.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    for (let i = 0; i < value.length; i++) crc = CRC_TABLE[(crc ^ value[i]) & 0xff] ^ (crc >>> 8);
    onBytes(value.length);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function header(size, fields) {
  const view = new DataView(new ArrayBuffer(size));
  for (const [offset, bytes, value] of fields) {
    if (bytes === 2) view.setUint16(offset, value, true);
    else view.setUint32(offset, value, true);
  }
  return view.buffer;
}

// entries: [{path: "series/1.dcm", file: File}]; onProgress(bytesRead, totalBytes).
// Whether the classic zip format can hold these files (with room for their headers).
export function fitsInZip(entries) {
  const total = entries.reduce((sum, entry) => sum + entry.file.size, 0);
  return entries.length <= 0xffff && total + entries.length * 1024 <= LIMIT;
}

export async function zipFiles(entries, onProgress = () => {}) {
  const total = entries.reduce((sum, entry) => sum + entry.file.size, 0);
  if (!fitsInZip(entries)) {
    throw new ZipTooLarge("The folder is too large to zip in the browser (4 GB or 65,535 files at most).");
  }
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  let read = 0;
  for (const { path, file } of entries) {
    const name = encoder.encode(path);
    const crc = await crc32(file, (n) => onProgress((read += n), total));
    const common = [[8, 2, 0], [10, 2, 0], [12, 2, DOS_DATE_1980_01_01], [14, 4, crc], [18, 4, file.size], [22, 4, file.size], [26, 2, name.length]];
    parts.push(
      header(30, [[0, 4, 0x04034b50], [4, 2, 20], [6, 2, UTF8_NAMES], ...common]),
      name,
      file,
    );
    central.push(
      header(46, [[0, 4, 0x02014b50], [4, 2, 20], [6, 2, 20], [8, 2, UTF8_NAMES],
        ...common.map(([at, bytes, value]) => [at + 2, bytes, value]), [42, 4, offset]]),
      name,
    );
    offset += 30 + name.length + file.size;
  }
  const centralSize = central.reduce((sum, part) => sum + part.byteLength, 0);
  const end = header(22, [[0, 4, 0x06054b50], [8, 2, entries.length], [10, 2, entries.length],
    [12, 4, centralSize], [16, 4, offset]]);
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}
