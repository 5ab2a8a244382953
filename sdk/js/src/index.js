// stadium-client: join rooms on a Stadium relay from browsers and Node.
// Protocol: docs/protocol.md; same concepts and names as the Python SDK.
import { decode } from "@msgpack/msgpack";
import { DEFAULTS, EVENTS, Room, isFinalClose } from "./room.js";

export { Room, DEFAULTS, EVENTS, isFinalClose };
export { MirrorTable, StateError, StateMirror, decodeIds, statePayload } from "./state.js";
export * from "./errors.js";

/** msgpack-decode a binary room message (rooms send structured messages as msgpack). */
export function unpack(data) {
  return decode(data);
}

const ROUTE_PART = /^[A-Za-z0-9_.:~-]{1,128}$/;

export class Client {
  /** `baseUrl`: the relay, as `http(s)://host:port` or `ws(s)://host:port`. `options`:
   * `WebSocket` (an implementation; default `globalThis.WebSocket`, pass the `ws` package's
   * export on Node 20) and any room option (see DEFAULTS) as the default for every room. */
  constructor(baseUrl, options = {}) {
    const { WebSocket = globalThis.WebSocket, ...roomOptions } = options;
    if (typeof WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass { WebSocket } (e.g. from the ws package)");
    }
    const url = new URL(baseUrl);
    const secure = url.protocol === "https:" || url.protocol === "wss:";
    if (!["http:", "https:", "ws:", "wss:"].includes(url.protocol)) {
      throw new TypeError(`baseUrl must be http(s):// or ws(s)://, not ${url.protocol}`);
    }
    const path = url.pathname.replace(/\/+$/, "");
    this.baseUrl = `${secure ? "https" : "http"}://${url.host}${path}`;
    this.wsUrl = `${secure ? "wss" : "ws"}://${url.host}${path}`;
    this.WebSocket = WebSocket;
    this.options = roomOptions;
  }

  /** Join `/rooms/{type}/{id}` (with a join token when the relay has a secret). Returns the
   * Room at once, so handlers can be attached before anything arrives; `await room.joined`
   * waits for the first join (it rejects with the error that ended the attempts). */
  joinRoom(type, id, token = null, options = {}) {
    for (const [what, value] of [["type", type], ["id", id]]) {
      if (typeof value !== "string" || !ROUTE_PART.test(value)) {
        throw new TypeError(`room ${what} ${JSON.stringify(value)} is not 1-128 of A-Z a-z 0-9 _ . : ~ -`);
      }
    }
    const path = `/rooms/${type}/${id}${token ? `?token=${encodeURIComponent(token)}` : ""}`;
    return new Room({
      url: this.wsUrl + path, httpUrl: this.baseUrl + path, type, id,
      WebSocket: this.WebSocket, options: { ...this.options, ...options },
    });
  }
}
