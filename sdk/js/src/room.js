// A connection to one room on a Stadium relay over WebSocket: messages, the state mirror,
// and reconnect with backoff that rejoins with the same token (or a fresh one, when the relay
// says it expired and the room can ask for one) and flushes buffered sends.
import { encode } from "@msgpack/msgpack";
import {
  JoinRefusedError, MessageTooLargeError, RelayUnreachableError, SendBufferFullError,
  StadiumError, StateMessageError, TokenRefusedError, redactUrl,
} from "./errors.js";
import { StateError, StateMirror, statePayload } from "./state.js";

export const EVENTS = ["message", "state", "join", "leave", "close", "reconnecting", "reconnected", "error"];

export const DEFAULTS = Object.freeze({
  maxRetries: 8, // reconnect attempts in a row before giving up
  minDelay: 250, // ms before the first retry; doubles each failed attempt
  maxDelay: 10000, // ms, ceiling of the backoff
  jitter: 0.5, // fraction of each delay that is random, so clients do not retry in step
  connectTimeout: 10000, // ms for the WebSocket handshake
  maxBufferedMessages: 1000, // sends kept while disconnected
  maxBufferedBytes: 1 << 20,
  stateHistory: 1,
});

// Closes that mean "do not come back": normal, policy, and the room's own codes.
export function isFinalClose(code) {
  return code === 1000 || code === 1008 || (code >= 3000 && code <= 4999);
}

// Refusals that the same token will get again, whatever the delay.
const FINAL_REFUSALS = new Set(["unknown_room_type", "bad_room_id", "origin_not_allowed"]);

function asBytes(data) {
  if (typeof data === "string") return data;
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

export class Room {
  /** Use `client.joinRoom(type, id, token)`; the room starts connecting at once. */
  constructor({ url, httpUrl, type, id, WebSocket, options }) {
    this.type = type;
    this.id = id;
    this.url = url;
    this.state = new StateMirror(options.stateHistory ?? DEFAULTS.stateHistory);
    /** "connecting" | "open" | "reconnecting" | "closed" */
    this.status = "connecting";
    this._httpUrl = httpUrl;
    this._WebSocket = WebSocket;
    this._opts = { ...DEFAULTS, ...options };
    this._handlers = Object.fromEntries(EVENTS.map((e) => [e, []]));
    this._ws = null;
    this._buffer = [];
    this._bufferedBytes = 0;
    this._failures = 0;
    this._lastErrorCode = null;
    this._everJoined = false;
    this._timer = null;
    this._leaving = null;
    this._refreshed = false; // a fresh token was asked for since the last open
    this.joined = new Promise((resolve, reject) => {
      this._resolveJoined = resolve;
      this._rejectJoined = reject;
    });
    this.joined.catch(() => {}); // a caller that never awaits it must not see an unhandled rejection
    this._open();
  }

  /** `"message"`: `cb(data)`, a string (text frame) or Uint8Array (binary), as the room sent
   * it. `"state"`: `cb(mirror)` after each applied tick. `"join"`: joined the first time.
   * `"reconnecting"`: `cb({attempt, delay, code, reason, error})` before each retry.
   * `"reconnected"`: `cb({attempts})`. `"error"`: `cb(StadiumError)`. `"leave"`: `leave()`
   * finished. `"close"`: `cb({code, reason, wasClean, error})`, once, when the room is over
   * for good. Returns a function that removes the callback. */
  on(event, callback) {
    const list = this._handlers[event];
    if (!list) throw new RangeError(`unknown event ${JSON.stringify(event)}; use one of ${EVENTS.join(", ")}`);
    list.push(callback);
    return () => this.off(event, callback);
  }

  off(event, callback) {
    const list = this._handlers[event];
    const at = list ? list.indexOf(callback) : -1;
    if (at >= 0) list.splice(at, 1);
  }

  once(event, callback) {
    const off = this.on(event, (...args) => {
      off();
      callback(...args);
    });
    return off;
  }

  get connected() {
    return this.status === "open";
  }

  /** A string goes as a text frame, a Uint8Array/ArrayBuffer as binary, anything else
   * msgpack-encoded as binary. While disconnected, messages wait in a bounded buffer and go
   * out in order after the reconnect; returns false when the buffer was full (an "error"
   * event says so). Throws once the room is closed. */
  send(message) {
    if (this.status === "closed" || this._leaving) throw new StadiumError("room_closed", "the room is closed");
    const data = asBytes(message) ?? encode(message);
    if (this.status === "open" && this._ws?.readyState === 1) {
      this._ws.send(data);
      return true;
    }
    const size = typeof data === "string" ? data.length * 3 : data.byteLength; // UTF-8 bound
    const o = this._opts;
    if (this._buffer.length >= o.maxBufferedMessages || this._bufferedBytes + size > o.maxBufferedBytes) {
      this._emit("error", new SendBufferFullError(
        `send buffer full (${this._buffer.length} messages, ${this._bufferedBytes} bytes): message dropped`,
        { maxBufferedMessages: o.maxBufferedMessages, maxBufferedBytes: o.maxBufferedBytes }));
      return false;
    }
    this._buffer.push(data);
    this._bufferedBytes += size;
    return true;
  }

  /** Close the connection (no reconnect); resolves once the socket has closed. */
  leave(code = 1000, reason = "") {
    if (this.status === "closed") return Promise.resolve();
    if (this._leaving) return this._leaving;
    this._leaving = new Promise((resolve) => this.once("close", () => resolve()));
    clearTimeout(this._timer);
    const ws = this._ws;
    if (ws && ws.readyState === 1) {
      ws.close(code, reason);
    } else {
      if (ws) this._detach(ws).close();
      this._finish({ code, reason: reason || "left", wasClean: true });
    }
    return this._leaving;
  }

  // --- connection -------------------------------------------------------------------------
  _open() {
    this._timer = null;
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (e) {
      this._handshakeFailed(String(e?.message ?? e));
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let opened = false;
    let errorText = null;
    const timeout = setTimeout(() => {
      if (opened || this._ws !== ws) return;
      errorText = `no handshake within ${this._opts.connectTimeout} ms`;
      this._detach(ws).close();
      this._handshakeFailed(errorText);
    }, this._opts.connectTimeout);
    ws.onopen = () => {
      opened = true;
      clearTimeout(timeout);
      this._onOpen();
    };
    ws.onerror = (ev) => {
      errorText = ev?.message ?? ev?.error?.message ?? errorText;
    };
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onclose = (ev) => {
      clearTimeout(timeout);
      if (this._ws !== ws) return;
      this._ws = null;
      if (opened) this._onClose(ev.code, ev.reason, ev.wasClean);
      else this._handshakeFailed(errorText);
    };
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    if (this._ws === ws) this._ws = null;
    return ws;
  }

  _onOpen() {
    const again = this._everJoined;
    const attempts = this._failures;
    this._everJoined = true;
    this._failures = 0;
    this._lastErrorCode = null;
    this._refreshed = false;
    this.status = "open";
    const pending = this._buffer;
    this._buffer = [];
    this._bufferedBytes = 0;
    for (const data of pending) this._ws.send(data);
    if (again) {
      this._emit("reconnected", { attempts });
    } else {
      this._resolveJoined(this);
      this._emit("join");
    }
  }

  _onMessage(raw) {
    const data = typeof raw === "string" ? raw : asBytes(raw) ?? new Uint8Array(raw);
    let body = null;
    try {
      body = statePayload(data);
    } catch (e) {
      this._emit("error", new StateMessageError(`undecodable state message: ${e.message}`));
      return;
    }
    if (body === null) {
      this._emit("message", data);
      return;
    }
    let applied;
    try {
      applied = this.state.apply(body);
    } catch (e) {
      if (!(e instanceof StateError)) throw e;
      this._emit("error", new StateMessageError(e.message));
      return;
    }
    if (applied) this._emit("state", this.state);
  }

  _onClose(code, reason, wasClean) {
    if (this._leaving) {
      this._emit("leave");
      this._finish({ code, reason, wasClean });
      return;
    }
    if (isFinalClose(code)) {
      this._finish({ code, reason, wasClean });
      return;
    }
    let error = null;
    if (code === 1009) {
      error = new MessageTooLargeError(`the relay closed the socket (1009): ${reason || "message too large"}`,
        { closeCode: code, reason });
      this._emit("error", error);
    }
    this._retry({ code, reason, error });
  }

  async _handshakeFailed(errorText) {
    if (this.status === "closed" || this._leaving) return;
    this.status = this._everJoined ? "reconnecting" : "connecting";
    const error = await this._diagnose(errorText);
    if (this.status === "closed" || this._leaving) return;
    if (error.name === "TokenRefusedError" && error.code === "expired" && await this._freshToken(error)) {
      if (this.status === "closed" || this._leaving) return;
      this._retry({ code: null, reason: error.message, error: null });
      return;
    }
    if (this.status === "closed" || this._leaving) return;
    if (error.code !== this._lastErrorCode) this._emit("error", error);
    this._lastErrorCode = error.code;
    if (error.final) {
      this._finish({ code: null, reason: error.message, wasClean: false, error });
      return;
    }
    this._retry({ code: null, reason: error.message, error });
  }

  /** The join token expired (a seat's lasts a minute): ask `refreshToken` (given by
   * `client.join(seat)` with a player token) for a fresh one, once per run of failures.
   * True when the next attempt carries it. */
  async _freshToken(refusal) {
    const refresh = this._opts.refreshToken;
    if (typeof refresh !== "function" || this._refreshed) return false;
    this._refreshed = true;
    let token;
    try {
      token = await refresh();
    } catch (e) {
      this._emit("error", new TokenRefusedError(refusal.code,
        `${refusal.message}; no fresh token: ${e?.message ?? e}`, { status: 401, final: false }));
      return false;
    }
    if (typeof token !== "string" || !token) return false;
    const withToken = (url) => {
      const u = new URL(url);
      u.searchParams.set("token", token);
      return u.href;
    };
    this.url = withToken(this.url);
    this._httpUrl = withToken(this._httpUrl);
    return true;
  }

  /** Why the upgrade failed. Browsers hide the HTTP status of a refused upgrade, so the
   * relay is asked again with a plain GET to the same room URL: with `--secret` it checks
   * the token the same way and answers with the same JSON error body. */
  async _diagnose(errorText) {
    const m = /Unexpected server response: (\d+)/.exec(errorText ?? "");
    const wsStatus = m ? Number(m[1]) : null;
    let status = wsStatus;
    let body = null;
    try {
      const res = await fetch(this._httpUrl, { redirect: "manual" });
      if (status === null || status === res.status) {
        status = res.status;
        body = await res.json().catch(() => null);
      } else {
        await res.body?.cancel();
      }
    } catch (e) {
      if (status === null) {
        return new RelayUnreachableError(
          `cannot reach the relay at ${redactUrl(this.url)}: ${redactUrl(errorText ?? e.message)}`,
          { final: false });
      }
    }
    const code = body?.error?.code ?? `http_${status}`;
    const text = body?.error?.message ?? errorText ?? `HTTP ${status}`;
    const details = { status, final: false };
    if (status === 401) return new TokenRefusedError(code, `join token refused: ${text}`, { ...details, final: true });
    if (status >= 400 && FINAL_REFUSALS.has(code)) {
      return new JoinRefusedError(code, `join refused (${status}): ${text}`, { ...details, final: true });
    }
    if (status >= 400 && wsStatus !== null) {
      return new JoinRefusedError(code, `join refused (${status}): ${text}`, details);
    }
    return new StadiumError("handshake_failed",
      `WebSocket handshake failed: ${redactUrl(errorText ?? "no reason given")}`,
      details);
  }

  _retry({ code, reason, error }) {
    this._failures += 1;
    const o = this._opts;
    if (this._failures > o.maxRetries) {
      const why = error ? `${error.code}: ${error.message}` : `close ${code}${reason ? ` ${reason}` : ""}`;
      this._finish({ code, reason: `gave up after ${o.maxRetries} attempts (${why})`, wasClean: false, error });
      return;
    }
    const base = Math.min(o.maxDelay, o.minDelay * 2 ** (this._failures - 1));
    const delay = Math.round(base * (1 - o.jitter) + base * o.jitter * Math.random());
    this.status = this._everJoined ? "reconnecting" : "connecting";
    // the relay may be a new process whose ticks start at 1 again
    if (this._everJoined) this.state.expectSnapshot();
    this._emit("reconnecting", { attempt: this._failures, delay, code, reason, error });
    this._timer = setTimeout(() => this._open(), delay);
  }

  _finish(event) {
    if (this.status === "closed") return;
    this.status = "closed";
    clearTimeout(this._timer);
    this._buffer = [];
    this._bufferedBytes = 0;
    const close = { code: event.code ?? null, reason: event.reason ?? "", wasClean: !!event.wasClean,
      error: event.error ?? null };
    if (!this._everJoined) {
      this._rejectJoined(close.error ?? new StadiumError("closed", `room closed before joining: ${close.reason}`,
        { closeCode: close.code }));
    }
    this._emit("close", close);
  }

  _emit(event, ...args) {
    for (const cb of [...this._handlers[event]]) {
      try {
        cb(...args);
      } catch (e) {
        // a failing callback must not leave the room half-updated; surface it after
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
