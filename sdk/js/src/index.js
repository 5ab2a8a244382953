// stadium-client: join rooms on a Stadium relay from browsers and Node.
// Protocol: docs/protocol.md; same concepts and names as the Python SDK.
import { decode } from "@msgpack/msgpack";
import { Leaderboard } from "./leaderboard.js";
import { freshSeat, matchmake, tokenOf } from "./matchmaker.js";
import { DEFAULTS, EVENTS, Room, isFinalClose } from "./room.js";

export { Room, DEFAULTS, EVENTS, isFinalClose, Leaderboard };
export { MirrorTable, StateError, StateMirror, decodeIds, statePayload } from "./state.js";
export * from "./errors.js";

/** msgpack-decode a binary room message (rooms send structured messages as msgpack). */
export function unpack(data) {
  return decode(data);
}

const ROUTE_PART = /^[A-Za-z0-9_.:~-]{1,128}$/;
export const MATCHMAKER_PORT = 8081; // `stadium dev`'s ports, the defaults when no URL is given
export const LEADERBOARD_PORT = 8082;

function roomQuery(token, query) {
  const params = new URLSearchParams(query ?? {});
  if (token) params.set("token", token);
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class Client {
  /** `baseUrl`: the relay, as `http(s)://host:port` or `ws(s)://host:port`. `options`:
   * `WebSocket` (an implementation; default `globalThis.WebSocket`, pass the `ws` package's
   * export on Node 20), `matchmakerUrl` and `leaderboardUrl` (default: the relay's host on
   * ports 8081 and 8082, as `stadium dev` runs them) and any room option (see DEFAULTS) as
   * the default for every room; `playerToken`: the player's token from the game's backend (a
   * string, or a function that gives one, sync or async), sent to the matchmaker and used to
   * get a fresh join token when a seat's has expired. */
  constructor(baseUrl, options = {}) {
    const { WebSocket = globalThis.WebSocket, matchmakerUrl, leaderboardUrl, playerToken = null,
      ...roomOptions } = options;
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
    this.matchmakerUrl = (matchmakerUrl ?? `${secure ? "https" : "http"}://${url.hostname}:${MATCHMAKER_PORT}`)
      .replace(/\/+$/, "");
    this.leaderboardUrl = (leaderboardUrl ?? `${secure ? "https" : "http"}://${url.hostname}:${LEADERBOARD_PORT}`)
      .replace(/\/+$/, "");
    this.WebSocket = WebSocket;
    this.playerToken = playerToken;
    this.options = roomOptions;
  }

  /** Queue with the matchmaker and resolve with the seat once matched; `opts`: `player`
   * (required), `token` (default: the client's `playerToken`), `party`, `partyToken`,
   * `regions`, `attributes`, `timeout` (ms), `signal`. See matchmaker.js. */
  matchmake(queue, opts = {}) {
    return matchmake(this.matchmakerUrl, queue, { token: this.playerToken, ...opts });
  }

  /** The seat's player's seat in its match with a fresh join token (see matchmaker.js). */
  freshSeat(seat, { token = this.playerToken, signal } = {}) {
    return freshSeat(this.matchmakerUrl, seat.match_id, { token, player: seat.player, signal });
  }

  /** Join the room of a seat from `matchmake` (its relay, room and token). With a player
   * token (`options.playerToken`, default the client's), a reconnect the relay refuses as
   * `expired` gets a fresh join token for the same seat from the matchmaker by itself. */
  join(seat, options = {}) {
    if (!seat || typeof seat.url !== "string" || !/^(wss?|https?):\/\//.test(seat.url)) {
      throw new TypeError("join(seat) needs a seat from matchmake(): { url, room_type, room_id, token }");
    }
    const { query, playerToken = this.playerToken, ...roomOptions } = options;
    if (!roomOptions.refreshToken && playerToken && seat.token && seat.match_id) {
      roomOptions.refreshToken = async () => (await freshSeat(this.matchmakerUrl, seat.match_id,
        { token: await tokenOf(playerToken) })).token;
    }
    const url = seat.url.replace(/^http/, "ws");
    const suffix = roomQuery(seat.token, query);
    return new Room({
      url: url + suffix, httpUrl: url.replace(/^ws/, "http") + suffix, type: seat.room_type, id: seat.room_id,
      WebSocket: this.WebSocket, options: { ...this.options, ...roomOptions },
    });
  }

  /** A board of the leaderboard service: `top(limit)`, `rank(player)`, `around`, `ranks`. */
  leaderboard(board) {
    return new Leaderboard(this.leaderboardUrl, board);
  }

  /** Join `/rooms/{type}/{id}` (with a join token when the relay has a secret; `options.query`:
   * more query parameters for the room, e.g. `{name}` for arena). Returns the
   * Room at once, so handlers can be attached before anything arrives; `await room.joined`
   * waits for the first join (it rejects with the error that ended the attempts). */
  joinRoom(type, id, token = null, options = {}) {
    for (const [what, value] of [["type", type], ["id", id]]) {
      if (typeof value !== "string" || !ROUTE_PART.test(value)) {
        throw new TypeError(`room ${what} ${JSON.stringify(value)} is not 1-128 of A-Z a-z 0-9 _ . : ~ -`);
      }
    }
    const { query, ...roomOptions } = options;
    const path = `/rooms/${type}/${id}${roomQuery(token, query)}`;
    return new Room({
      url: this.wsUrl + path, httpUrl: this.baseUrl + path, type, id,
      WebSocket: this.WebSocket, options: { ...this.options, ...roomOptions },
    });
  }
}
