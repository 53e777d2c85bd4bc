// The public HTTP API as the console uses it: one fetch wrapper, the bearer
// kept in sessionStorage (never a URL, never a cookie), and the channel's
// SSE tail read through fetch() so it can carry the Authorization header
// (EventSource cannot; ADR-0017).

const TOKEN_KEY = "parley.token";

export const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const out = Object.assign({}, extra);
  if (auth.token) out["Authorization"] = "Bearer " + auth.token;
  return out;
}

export async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || "HTTP " + response.status);
  }
  return data;
}

export function channelPath(name, action) {
  return "/channels/" + encodeURIComponent(name) + (action ? "/" + action : "");
}

export function artifactPath(uri) {
  const match = /^caucus:\/\/artifact\/([a-z0-9][a-z0-9-]{0,63})\/([0-9a-f]{64})$/.exec(uri);
  return match ? channelPath(match[1], "artifacts/" + match[2]) : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A live tail of one channel from `cursor`. Every frame carries `id: <cursor
// after the message>`, so a frame at or below the cursor is a duplicate
// (dropped) and one past cursor + 1 is a gap (the stream is reopened from the
// cursor). After a dropped connection it reconnects with Last-Event-ID.
export class Tail {
  constructor(channel, cursor, { onMessage, onState }) {
    this.channel = channel;
    this.cursor = cursor;
    this.onMessage = onMessage;
    this.onState = onState;
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    let delay = 250;
    while (!this.stopped) {
      this.controller = new AbortController();
      try {
        const response = await fetch(channelPath(this.channel, "stream"), {
          headers: headers({ Accept: "text/event-stream", "Last-Event-ID": String(this.cursor) }),
          cache: "no-store",
          credentials: "omit",
          signal: this.controller.signal,
        });
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          const error = (data && data.error) || {};
          throw new ApiError(response.status, error.code || "http_error", error.message || "HTTP " + response.status);
        }
        this.onState("live");
        delay = 250;
        await this.consume(response.body);
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 404)) {
          this.onState(error.status === 401 ? "unauthorized" : "gone");
          return;
        }
      }
      if (this.stopped) return;
      this.onState("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 4000);
    }
  }

  async consume(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.stopped) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!this.frame(block)) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    }
  }

  // Returns false on a gap (the caller reopens the stream from this.cursor).
  frame(block) {
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("id:")) id = Number(line.slice(3).trim());
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (id === null || data.length === 0 || !Number.isSafeInteger(id)) return true;
    if (id <= this.cursor) return true; // already shown
    if (id !== this.cursor + 1) return false; // a gap: resume from what we have
    let message;
    try {
      message = JSON.parse(data.join("\n"));
    } catch (_) {
      return false;
    }
    this.cursor = id;
    this.onMessage(message, id);
    return true;
  }
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// A ULID for msg_id: 10 characters of milliseconds, 16 random ones.
export function ulid() {
  let time = Date.now();
  let head = "";
  for (let i = 0; i < 10; i++) {
    head = CROCKFORD[time % 32] + head;
    time = Math.floor(time / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  return head + Array.from(random, (b) => CROCKFORD[b % 32]).join("");
}

// `ts` is "<ISO>#<counter>" (channels.md §2.4): the part before '#' is a date.
export function tsMillis(ts) {
  if (typeof ts !== "string") return NaN;
  return Date.parse(ts.split("#", 1)[0]);
}
