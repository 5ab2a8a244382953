// Reading a board of the leaderboard service (writes need the server key: game servers do them).
import { LeaderboardError } from "./errors.js";
import { callService } from "./service.js";

const enc = encodeURIComponent;

export class Leaderboard {
  /** Use `client.leaderboard(board)`. */
  constructor(baseUrl, board) {
    if (typeof board !== "string" || !board) throw new TypeError("board must be a non-empty string");
    this.url = baseUrl;
    this.board = board;
  }

  _get(path, query) {
    return callService(LeaderboardError, this.url, "GET", `/boards/${enc(this.board)}${path}`, { query });
  }

  /** The first `limit` entries: `{board, period, entries: [{rank, player, score, ...}], next_cursor}`;
   * pass `next_cursor` back as `cursor` for the next page. */
  top(limit = 10, { period = "all", cursor } = {}) {
    return this._get("", { limit, period, cursor });
  }

  /** One player's `{board, period, rank, player, score, ...}`; rejects `unknown_player` without a score. */
  rank(player, { period = "all" } = {}) {
    return this._get(`/players/${enc(player)}`, { period });
  }

  /** `n` entries either side of the player: `{board, period, entries}`. */
  around(player, n = 5, { period = "all" } = {}) {
    return this._get(`/players/${enc(player)}/around`, { n, period });
  }

  /** Ranks of a list of players (friends): `{board, period, entries, missing?}`. */
  ranks(players, { period = "all" } = {}) {
    return callService(LeaderboardError, this.url, "POST", `/boards/${enc(this.board)}/ranks`,
      { query: { period }, body: { players } });
  }
}
