// Type declarations for stadium-client (the package ships plain ES modules, no build step).

export type WireColumn =
  | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array
  | Float32Array | Float64Array;
export type NumberColumn = Exclude<WireColumn, BigInt64Array | BigUint64Array>;
/** `["fixed", precision, wire]`, `["angle", steps]`, `["int", wire]`, `["flags", bits]`, `["float", wire]` */
export type FieldKind = [string, ...(string | number)[]];

export interface RoomOptions {
  /** reconnect attempts in a row before giving up (default 8) */
  maxRetries?: number;
  /** ms before the first retry; doubles per failed attempt (default 250) */
  minDelay?: number;
  /** ms, ceiling of the backoff (default 10000) */
  maxDelay?: number;
  /** fraction of each delay that is random (default 0.5) */
  jitter?: number;
  /** ms for the WebSocket handshake (default 10000) */
  connectTimeout?: number;
  /** sends kept while disconnected (default 1000) */
  maxBufferedMessages?: number;
  /** bytes kept while disconnected (default 1 MiB) */
  maxBufferedBytes?: number;
  /** past ticks kept for diffs against an older baseline (default 1) */
  stateHistory?: number;
  /** gives a fresh join token when the relay refuses the room's as `expired` (asked once per
   * run of failed attempts); `client.join(seat)` sets it when it has a player token */
  refreshToken?: () => string | Promise<string>;
}

/** A player token from the game's backend, or a function that gives one. */
export type PlayerToken = string | (() => string | Promise<string>);

export interface ClientOptions extends RoomOptions {
  /** A WebSocket implementation; default globalThis.WebSocket (pass `ws`'s on Node 20). */
  WebSocket?: unknown;
  /** the matchmaker service (default: the relay's host, port 8081) */
  matchmakerUrl?: string;
  /** the leaderboard service (default: the relay's host, port 8082) */
  leaderboardUrl?: string;
  /** this player's token: sent to the matchmaker, and used for fresh join tokens */
  playerToken?: PlayerToken | null;
}

export interface JoinOptions extends RoomOptions {
  /** more query parameters for the room (e.g. `{ name }` for arena) */
  query?: Record<string, string>;
  /** the seat's player's token (default: the client's), to get a fresh join token */
  playerToken?: PlayerToken | null;
}

/** A place in a match, from `matchmake`. */
export interface Seat {
  player: string;
  team: number;
  match_id: string;
  room_type: string;
  room_id: string;
  /** ws:// URL of the room on its relay */
  url: string;
  token: string | null;
  /** seconds since the epoch when the token expires */
  expires: number;
}

export interface MatchmakeOptions {
  player: string;
  /** the player's token (default: the client's `playerToken`) */
  token?: PlayerToken | null;
  party?: string[];
  /** a party token (kind party) from the game's backend: the members agreed */
  partyToken?: string | null;
  regions?: Record<string, number>;
  attributes?: Record<string, unknown>;
  /** ms; then the ticket is cancelled and the call rejects with code `matchmake_timeout` */
  timeout?: number | null;
  signal?: AbortSignal;
}

export interface LeaderboardEntry {
  rank: number;
  player: string;
  score: number;
  [key: string]: unknown;
}

export interface LeaderboardPage {
  board: string;
  period: string;
  entries: LeaderboardEntry[];
  next_cursor?: string | null;
}

export declare class Leaderboard {
  readonly url: string;
  readonly board: string;
  top(limit?: number, options?: { period?: string; cursor?: string }): Promise<LeaderboardPage>;
  rank(player: string, options?: { period?: string }): Promise<LeaderboardEntry & { board: string; period: string }>;
  around(player: string, n?: number, options?: { period?: string }): Promise<LeaderboardPage>;
  ranks(players: string[], options?: { period?: string }): Promise<LeaderboardPage>;
}

export declare const MATCHMAKER_PORT: number;
export declare const LEADERBOARD_PORT: number;

export declare const DEFAULTS: Readonly<Required<RoomOptions>>;
export declare const EVENTS: readonly RoomEvent[];
export declare function isFinalClose(code: number): boolean;
/** msgpack-decode a binary room message. */
export declare function unpack(data: Uint8Array): unknown;

export declare class Client {
  constructor(baseUrl: string, options?: ClientOptions);
  readonly baseUrl: string;
  readonly wsUrl: string;
  readonly matchmakerUrl: string;
  readonly leaderboardUrl: string;
  readonly playerToken: PlayerToken | null;
  joinRoom(type: string, id: string, token?: string | null, options?: JoinOptions): Room;
  matchmake(queue: string, options: MatchmakeOptions): Promise<Seat>;
  join(seat: Seat, options?: JoinOptions): Room;
  /** the seat's player's seat with a fresh join token (POST /matches/{id}/seat) */
  freshSeat(seat: Seat, options?: { token?: PlayerToken | null; signal?: AbortSignal }): Promise<Seat>;
  leaderboard(board: string): Leaderboard;
}

export interface CloseEvent {
  code: number | null;
  reason: string;
  wasClean: boolean;
  error: StadiumError | null;
}

export interface ReconnectingEvent {
  attempt: number;
  delay: number;
  code: number | null;
  reason: string;
  error: StadiumError | null;
}

export interface RoomEventMap {
  message: (data: string | Uint8Array) => void;
  state: (state: StateMirror) => void;
  join: () => void;
  leave: () => void;
  close: (event: CloseEvent) => void;
  reconnecting: (event: ReconnectingEvent) => void;
  reconnected: (event: { attempts: number }) => void;
  error: (error: StadiumError) => void;
}
export type RoomEvent = keyof RoomEventMap;

export declare class Room {
  readonly type: string;
  readonly id: string;
  readonly url: string;
  readonly state: StateMirror;
  readonly status: "connecting" | "open" | "reconnecting" | "closed";
  readonly connected: boolean;
  /** Resolves on the first join; rejects with the error that ended the attempts. */
  readonly joined: Promise<Room>;
  on<E extends RoomEvent>(event: E, callback: RoomEventMap[E]): () => void;
  once<E extends RoomEvent>(event: E, callback: RoomEventMap[E]): () => void;
  off<E extends RoomEvent>(event: E, callback: RoomEventMap[E]): void;
  /** string: text frame; bytes: binary; anything else msgpack as binary. */
  send(message: unknown): boolean;
  leave(code?: number, reason?: string): Promise<void>;
}

export declare class MirrorTable {
  readonly name: string;
  readonly schema: Record<string, FieldKind>;
  readonly names: string[];
  /** 1 for live slots, indexed by entity id */
  readonly alive: Uint8Array;
  readonly columns: Record<string, WireColumn>;
  readonly ids: number[];
  readonly size: number;
  has(entity: number): boolean;
  /** wire values, indexed by entity id */
  column(field: string): WireColumn;
  /** game units (metres, radians), indexed by entity id */
  values(field: string): NumberColumn;
  get(entity: number): Record<string, number>;
}

export declare class StateMirror {
  constructor(history?: number);
  tick: number;
  tables: Record<string, MirrorTable>;
  doc: Record<string, unknown>;
  previous: StateMirror | null;
  table(name: string): MirrorTable;
  apply(payload: Uint8Array): boolean;
  expectSnapshot(): void;
  lerp(table: string, field: string, alpha: number): Float64Array;
}

export declare class StateError extends Error {}
export declare function statePayload(message: string | Uint8Array): Uint8Array | null;
export declare function decodeIds(enc: [number, number, Uint8Array] | null): number[];

export declare class StadiumError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown>);
  code: string;
  status?: number;
  closeCode?: number;
  final?: boolean;
}
export declare class TokenRefusedError extends StadiumError {}
export declare class JoinRefusedError extends StadiumError {}
export declare class RelayUnreachableError extends StadiumError {}
/** `url` with every `token` / `access_token` query value replaced by `[redacted]`. */
export declare function redactUrl(url: string | URL): string;
export declare class MessageTooLargeError extends StadiumError {}
export declare class SendBufferFullError extends StadiumError {}
export declare class StateMessageError extends StadiumError {}
export declare class MatchmakerError extends StadiumError {
  constructor(status: number, code: string, message: string, details?: Record<string, unknown>);
  status: number;
}
export declare class LeaderboardError extends StadiumError {
  constructor(status: number, code: string, message: string, details?: Record<string, unknown>);
  status: number;
}
