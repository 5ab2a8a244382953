// Queueing with the matchmaker service: create a ticket, long-poll it until it has a seat.
import { MatchmakerError } from "./errors.js";
import { callService, writeOnce } from "./service.js";

const LONG_POLL = 25; // seconds per wait request; the service allows up to --max-long-poll (30)

/** A token option as a string: a string, or what a function (sync or async) returns. */
export async function tokenOf(token) {
  return typeof token === "function" ? await token() : token ?? null;
}

/** Queue `player` in `queue` and resolve with their seat (`{player, team, match_id, room_type,
 * room_id, url, token, expires}`). `token`: the player's token (from the game's backend; a
 * string, or a function giving one), sent with every request; `partyToken`: the party's
 * agreement, for a party. `timeout` (ms) gives up and cancels the ticket; so does an
 * aborted `signal`. Rejects with a MatchmakerError (the ticket's reason for a failed ticket). */
export async function matchmake(baseUrl, queue, { player, party = [], regions = {}, attributes = {},
  timeout = null, signal, token = null, partyToken = null } = {}) {
  if (typeof player !== "string" || !player) throw new TypeError("matchmake needs { player }: a non-empty string");
  const bearer = await tokenOf(token);
  const call = (method, path, opts) => callService(MatchmakerError, baseUrl, method, path, { ...opts, token: bearer });
  const body = { queue, player, party, regions, attributes };
  if (partyToken) body.party_token = partyToken;
  // one ticket however often the request is retried (after a 503, or an answer lost)
  let ticket = await writeOnce(MatchmakerError, baseUrl, "POST", "/tickets", { body, signal, token: bearer });
  const deadline = timeout === null ? null : Date.now() + timeout;
  try {
    while (ticket.status === "waiting") {
      const left = deadline === null ? LONG_POLL : Math.min(LONG_POLL, (deadline - Date.now()) / 1000);
      if (left <= 0) {
        ticket = await giveUp(call, ticket.id);
        break;
      }
      ticket = await call("GET", `/tickets/${ticket.id}/wait`, { query: { timeout: Math.max(left, 0.05) }, signal });
    }
  } catch (e) {
    if (e?.name === "AbortError") await giveUp(call, ticket.id).catch(() => {});
    throw e;
  }
  if (ticket.status === "matched") {
    const seat = ticket.seats?.[player];
    if (!seat) throw new MatchmakerError(0, "no_seat", `ticket ${ticket.id} matched without a seat for ${player}`);
    return seat;
  }
  if (ticket.status === "cancelled") {
    throw new MatchmakerError(0, "matchmake_timeout", `no match in ${queue} within ${timeout} ms (ticket cancelled)`,
      { ticket: ticket.id });
  }
  const reason = String(ticket.reason ?? ticket.status);
  throw new MatchmakerError(0, reason, `ticket ${ticket.id} ${ticket.status}: ${reason}`, { ticket: ticket.id });
}

async function giveUp(call, ticketId) {
  try {
    return await call("DELETE", `/tickets/${ticketId}`);
  } catch (e) {
    // the matcher was first: keep the seat
    if (e.code === "already_matched" || e.code === "already_failed") return call("GET", `/tickets/${ticketId}`);
    throw e;
  }
}

/** `player`'s seat in match `matchId` with a fresh join token, for getting back into the room
 * after the seat's token expired: with the player's `token` (or, with no token, from a
 * matchmaker that checks none, `player`). */
export async function freshSeat(baseUrl, matchId, { token = null, player, signal } = {}) {
  const bearer = await tokenOf(token);
  return callService(MatchmakerError, baseUrl, "POST", `/matches/${encodeURIComponent(matchId)}/seat`,
    { body: bearer || !player ? {} : { player }, signal, token: bearer });
}
