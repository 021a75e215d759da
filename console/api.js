// The API client: every request carries the signed-in token in the Authorization header;
// errors come back as the API's problem documents and are thrown as ApiError with its detail.
// Server-sent events are read with fetch() streaming rather than EventSource, which cannot
// send a header (a token in the URL would end up in logs and history).

const TOKEN_KEY = "ewall.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

async function problem(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.detail) detail = body.detail;
  } catch (_) {
    // Not a problem document; the status line says enough.
  }
  if (response.status === 401) onUnauthorized(detail);
  return new ApiError(response.status, detail);
}

export async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  if (!response.ok) throw await problem(response);
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

// Follows a server-sent events stream until stop() is called; reconnects after a failure,
// resuming after the last event id when the stream has ids. onEvent(name, data, id).
export function follow(path, onEvent, { onState = () => {}, lastEventId = null } = {}) {
  const controller = new AbortController();
  let stopped = false;
  let lastId = lastEventId;
  async function run() {
    let delay = 500;
    while (!stopped) {
      try {
        const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
        if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
        const response = await fetch(`/api/v1${path}`, { headers, signal: controller.signal });
        if (!response.ok) {
          const error = await problem(response);
          if (response.status === 401 || response.status === 403) {
            onState("refused", error.message);
            return;
          }
          throw error;
        }
        onState("live");
        delay = 500;
        await readEvents(response.body, (name, data, id) => {
          if (id !== null) lastId = id;
          onEvent(name, data, id);
        });
      } catch (error) {
        if (stopped) return;
        onState("reconnecting", error.message);
      }
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

// Parses text/event-stream (the WHATWG format: fields per line, events end at a blank line).
async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "message";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(buffer[end] === "\r" && buffer[end + 1] === "\n" ? end + 2 : end + 1);
      if (line === "") {
        if (data.length) {
          let parsed;
          try {
            parsed = JSON.parse(data.join("\n"));
          } catch (_) {
            parsed = data.join("\n");
          }
          dispatch(name, parsed, id);
        }
        name = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") name = text;
      else if (field === "data") data.push(text);
      else if (field === "id") id = text;
    }
  }
}
