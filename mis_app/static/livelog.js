// The MAP's log while the study runs: GET /v1/inference/{id}/log, read with fetch and a
// stream reader (EventSource cannot send the X-Log-Key and Authorization headers it needs).
// Only the page that sent the study knows its key, so only it can read the lines.

const RETRY_MS = 300;
const TRIES_BEFORE_OPEN = 20; // the POST may reach the server a moment after this starts

export function newSecret() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // 128 bits
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Read server-sent events from `body`; onLine(id, text) for each line; whether `end` came.
async function readEvents(body, onLine) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return false;
    pending += value;
    const blocks = pending.split("\n\n");
    pending = blocks.pop();
    for (const block of blocks) {
      const fields = {};
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        fields[name] = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      }
      if (fields.event === "end") {
        reader.cancel().catch(() => {});
        return true;
      }
      if ("data" in fields && "id" in fields) onLine(Number(fields.id), fields.data);
    }
  }
}

// Follow one request's log until it ends or stop() is called; resumes after a dropped
// connection from the last line seen.
export function followLog(requestId, key, headers, onLine) {
  const controller = new AbortController();
  let lastId = 0;
  let opened = false;
  const run = async () => {
    for (let tries = 0; !controller.signal.aborted; tries++) {
      try {
        const response = await fetch(`/v1/inference/${encodeURIComponent(requestId)}/log`, {
          headers: { ...headers, "X-Log-Key": key, ...(lastId ? { "Last-Event-ID": String(lastId) } : {}) },
          cache: "no-store",
          signal: controller.signal,
        });
        if (response.ok) {
          opened = true;
          const ended = await readEvents(response.body, (id, text) => { lastId = id; onLine(text); });
          if (ended) return;
        } else if (opened || response.status !== 404 || tries >= TRIES_BEFORE_OPEN) {
          return; // over, or never ours to read
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      await pause(RETRY_MS);
    }
  };
  run();
  return { stop: () => controller.abort() };
}
