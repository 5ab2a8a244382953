// Typed errors a Room reports through its "error" event (and `room.joined` rejects with).

/** Base class: `code` is a short machine-readable name. */
export class StadiumError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "StadiumError";
    this.code = code;
    Object.assign(this, details);
  }
}

/** The relay refused the join token (HTTP 401 at the upgrade); `code` is the relay's
 * (`missing_token`, `malformed`, `unknown_key`, `bad_signature`, `wrong_audience`,
 * `wrong_kind`, `expired`, `not_yet_valid`, `wrong_room`). Final. */
export class TokenRefusedError extends StadiumError {
  constructor(code, message, details) {
    super(code, message, details);
    this.name = "TokenRefusedError";
  }
}

/** The relay answered the upgrade with another HTTP error (403, 404, 429, 503...). */
export class JoinRefusedError extends StadiumError {
  constructor(code, message, details) {
    super(code, message, details);
    this.name = "JoinRefusedError";
  }
}

/** Nothing answered at the relay's address (down, or not reachable from here). */
export class RelayUnreachableError extends StadiumError {
  constructor(message, details) {
    super("relay_unreachable", message, details);
    this.name = "RelayUnreachableError";
  }
}

/** The relay closed the socket with 1009: a message was over its `--max-message-size`. */
export class MessageTooLargeError extends StadiumError {
  constructor(message, details) {
    super("message_too_large", message, details);
    this.name = "MessageTooLargeError";
  }
}

/** `room.send` while disconnected found the send buffer full; the message was dropped. */
export class SendBufferFullError extends StadiumError {
  constructor(message, details) {
    super("send_buffer_full", message, details);
    this.name = "SendBufferFullError";
  }
}

/** A state message could not be applied; the mirror waits for the next snapshot. */
export class StateMessageError extends StadiumError {
  constructor(message, details) {
    super("bad_state", message, details);
    this.name = "StateMessageError";
  }
}

/** The matchmaker refused a request, or a ticket ended without a seat. `status` is the HTTP
 * status (0 when the service could not be reached or the ticket failed); `code` is the
 * service's (`unknown_queue`, ...), the ticket's reason (`timeout`), `unreachable` or
 * `matchmake_timeout` (the client's own `timeout` ran out; the ticket was cancelled). */
export class MatchmakerError extends StadiumError {
  constructor(status, code, message, details) {
    super(code, message, { status, ...details });
    this.name = "MatchmakerError";
  }
}

/** The leaderboard refused a request (`unknown_board`, `unknown_player`, ...) or could not be
 * reached (`status` 0, `code` `unreachable`). */
export class LeaderboardError extends StadiumError {
  constructor(status, code, message, details) {
    super(code, message, { status, ...details });
    this.name = "LeaderboardError";
  }
}

/** `url` with the value of every `token` / `access_token` query parameter replaced, for
 * error messages and logs: a join token is a credential. */
export function redactUrl(url) {
  return String(url).replace(/([?&](?:access_)?token=)[^&#]*/gi, "$1[redacted]");
}
