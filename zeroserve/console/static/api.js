// The console's one way to the API: the session cookie goes with every request (same origin), and the
// X-Zeroserve-Console header that lets the gateway take it; the picked resource group as AI-Resource-Group.
// A 401 means the session is over: the shell hears "session-expired" and signs the user in again.

const CONSOLE_HEADER = "X-Zeroserve-Console";
let group = "default";

export function setGroup(name) {
  group = name;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  return { [CONSOLE_HEADER]: "1", "AI-Resource-Group": group, ...extra };
}

async function errorOf(response) {
  let code = `HTTP${response.status}`;
  let message = `${response.status} ${response.statusText || "error"}`;
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error === "object") {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    }
  } catch {
    // not JSON: the status line says it
  }
  return new ApiError(response.status, code, message);
}

function expired() {
  window.dispatchEvent(new CustomEvent("session-expired"));
}

async function request(method, path, body, signal) {
  const init = { method, headers: headers({ Accept: "application/json" }), credentials: "same-origin", signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "NetworkError", "zeroserve could not be reached: is it running?");
  }
  if (response.status === 401) {
    const error = await errorOf(response);
    expired();
    throw error;
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204 || response.status === 202 && response.headers.get("content-length") === "0") {
    return null;
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// One SSE message block ("event:", "id:", "data:" lines) as {event, id, data}.
function parseBlock(block) {
  const message = { event: "message", id: null, data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") message.event = value;
    else if (field === "id") message.id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length && message.id === null) return null;
  message.data = data.join("\n");
  try {
    message.data = JSON.parse(message.data);
  } catch {
    // plain text data stays text
  }
  return message;
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// Reads an SSE endpoint with fetch (so that the console's headers go with it); calls onMessage per message and
// reconnects with Last-Event-ID until `signal` aborts; `onOpen`, if given, is called each time the stream is
// open (from then on no event is missed: a page reads what it shows again then). Rejects with ApiError when the
// endpoint refuses (404, 405, ...): a stream that is not there is not retried. Resolves once aborted.
async function stream(path, onMessage, signal, onOpen) {
  let lastId = null;
  let wait = 500;
  while (!signal?.aborted) {
    let response;
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId) extra["Last-Event-ID"] = lastId;
      response = await fetch(path, { headers: headers(extra), credentials: "same-origin", signal, cache: "no-store" });
    } catch (error) {
      if (signal?.aborted) return;
      await pause(wait, signal);
      wait = Math.min(wait * 2, 10000);
      continue;
    }
    if (response.status === 401) {
      expired();
      throw await errorOf(response);
    }
    if (!response.ok) throw await errorOf(response);
    wait = 500;
    if (onOpen) onOpen();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const message = parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (message) {
            if (message.id) lastId = message.id;
            onMessage(message);
          }
        }
      }
    } catch (error) {
      if (signal?.aborted) return;
    }
    await pause(wait, signal);
  }
}

export const api = {
  get: (path, signal) => request("GET", path, undefined, signal),
  send: (method, path, body, signal) => request(method, path, body, signal),
  stream,
  get group() {
    return group;
  },
};

// The console's own session routes (not the API): sign in, who is signed in, sign out.
export const session = {
  async signIn(clientId, clientSecret) {
    const response = await fetch("/console/session", {
      method: "POST", credentials: "same-origin",
      headers: { [CONSOLE_HEADER]: "1", "Content-Type": "application/json" },
      body: JSON.stringify({ clientId, clientSecret }),
    });
    if (!response.ok) throw await errorOf(response);
  },
  async current() {
    const response = await fetch("/console/session", { headers: { [CONSOLE_HEADER]: "1" }, credentials: "same-origin" });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  },
  async signOut() {
    await fetch("/console/session", { method: "DELETE", headers: { [CONSOLE_HEADER]: "1" }, credentials: "same-origin" });
  },
};
