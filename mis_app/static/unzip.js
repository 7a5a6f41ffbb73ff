// Reading a zip in the browser, from a Blob (or File), a piece at a time: the listing from the
// central directory at its end, and one entry's content when it is shown (stored entries as
// they are, deflated ones through DecompressionStream). No other byte of the archive is read,
// so an output of hundreds of megabytes costs only what is on the screen.

const END = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_END = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const MAX_LISTING = 64 * 1024 * 1024; // bytes of central directory: about 500,000 entries
const STORED = 0;
const DEFLATED = 8;

export class ZipUnreadable extends Error {}

async function view(blob, start, length) {
  if (start < 0 || start + length > blob.size) throw new ZipUnreadable("it is cut short or damaged");
  return new DataView(await blob.slice(start, start + length).arrayBuffer());
}

const u16 = (data, at) => data.getUint16(at, true);
const u32 = (data, at) => data.getUint32(at, true);
const u64 = (data, at) => Number(data.getBigUint64(at, true));

// Where the central directory is, and how many entries it has (zip64 when the classic
// fields overflow).
async function directory(blob) {
  const length = Math.min(blob.size, 22 + 0xffff + 20);
  const tail = await view(blob, blob.size - length, length);
  let at = length - 22;
  while (at >= 0 && u32(tail, at) !== END) at--;
  if (at < 0) throw new ZipUnreadable("it is not a zip archive (no end-of-archive record)");
  let count = u16(tail, at + 10);
  let size = u32(tail, at + 12);
  let offset = u32(tail, at + 16);
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    if (at < 20 || u32(tail, at - 20) !== ZIP64_LOCATOR) throw new ZipUnreadable("its zip64 record is missing");
    const record = await view(blob, u64(tail, at - 20 + 8), 56);
    if (u32(record, 0) !== ZIP64_END) throw new ZipUnreadable("its zip64 record is damaged");
    count = u64(record, 32);
    size = u64(record, 40);
    offset = u64(record, 48);
  }
  return { count, size, offset };
}

// [{ name, size, compressedSize, method, offset, encrypted }] for the files (folders left out).
export async function readListing(blob) {
  const { count, size, offset } = await directory(blob);
  if (size > MAX_LISTING) throw new ZipUnreadable("its listing is too large to read in the browser");
  const data = await view(blob, offset, size);
  const bytes = new Uint8Array(data.buffer);
  const names = new TextDecoder(); // UTF-8; other encodings are rare and show as replacement characters
  const entries = [];
  let at = 0;
  for (let n = 0; n < count; n++) {
    if (at + 46 > size || u32(data, at) !== CENTRAL) throw new ZipUnreadable("its listing is damaged");
    const nameLength = u16(data, at + 28);
    const extraStart = at + 46 + nameLength;
    const extraEnd = extraStart + u16(data, at + 30);
    if (extraEnd + u16(data, at + 32) > size) throw new ZipUnreadable("its listing is damaged");
    const entry = {
      name: names.decode(bytes.subarray(at + 46, extraStart)),
      method: u16(data, at + 10),
      encrypted: (u16(data, at + 8) & 1) === 1,
      compressedSize: u32(data, at + 20),
      size: u32(data, at + 24),
      offset: u32(data, at + 42),
    };
    readZip64Extra(data, extraStart, extraEnd, entry);
    if (!entry.name.endsWith("/")) entries.push(entry);
    at = extraEnd + u16(data, at + 32);
  }
  return entries;
}

// The zip64 extra field holds, in this order, each of these that overflowed its classic field.
function readZip64Extra(data, at, end, entry) {
  while (at + 4 <= end) {
    const id = u16(data, at);
    const length = u16(data, at + 2);
    if (id === 0x0001) {
      let field = at + 4;
      for (const key of ["size", "compressedSize", "offset"]) {
        if (entry[key] === 0xffffffff && field + 8 <= at + 4 + length) {
          entry[key] = u64(data, field);
          field += 8;
        }
      }
    }
    at += 4 + length;
  }
}

async function contentStart(blob, entry) {
  if (entry.encrypted) throw new ZipUnreadable("it is encrypted");
  if (entry.method !== STORED && entry.method !== DEFLATED) {
    throw new ZipUnreadable(`it is compressed with a method the browser cannot read (${entry.method})`);
  }
  const local = await view(blob, entry.offset, 30);
  if (u32(local, 0) !== LOCAL) throw new ZipUnreadable("its entry is damaged");
  return entry.offset + 30 + u16(local, 26) + u16(local, 28);
}

function contentStream(blob, entry, start) {
  const raw = blob.slice(start, start + entry.compressedSize).stream();
  return entry.method === DEFLATED ? raw.pipeThrough(new DecompressionStream("deflate-raw")) : raw;
}

// The entry's content as a Blob of `type`: a slice of the archive when stored (no copy).
export async function entryBlob(blob, entry, type) {
  const start = await contentStart(blob, entry);
  if (entry.method === STORED) return blob.slice(start, start + entry.size, type);
  const inflated = await new Response(contentStream(blob, entry, start)).blob();
  return new Blob([inflated], { type });
}

// Up to `limit` bytes from the start of the entry's content; inflating stops there.
export async function entryBytes(blob, entry, limit) {
  const start = await contentStart(blob, entry);
  const reader = contentStream(blob, entry, start).getReader();
  const chunks = [];
  let length = 0;
  let finished = false;
  while (length < limit && !finished) {
    const { done, value } = await reader.read();
    if (done) finished = true;
    else {
      chunks.push(value);
      length += value.length;
    }
  }
  const truncated = length > limit || (!finished && entry.size > limit);
  if (!finished) reader.cancel().catch(() => {});
  const bytes = new Uint8Array(Math.min(length, limit));
  let at = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, bytes.length - at);
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, truncated };
}
