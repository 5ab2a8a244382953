"""Boards in Redis: settings, atomic submits across periods, pages, ranks, removal."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaderboard import keys, periods, scripts
from leaderboard.batch import CHUNK, ScriptBatcher
from stadium import once as idempotency

# Single-score submits to one board merged into one script call, at most (see `_Merge`).
COALESCE = 8

# Matched with fullmatch: `$` would also accept a trailing newline.
NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
BOARD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Scores are IEEE doubles; within this range every integer is exact.
SCORE_LIMIT = 2**53 - 1
TIEBREAK = 13
MAX_BATCH = 1000
MAX_PAGE = 1000
MAX_AROUND = 100
MAX_FRIENDS = 1000
MAX_LISTED = 10000  # boards one listing scans for at most; past it, `truncated` says so


class BoardError(Exception):
    """Bad input or a missing board: `status` and `code` go to the client as they are."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Board:
    order: str = "desc"
    operator: str = "best"
    periods: list[str] = field(default_factory=list)
    reset_time: str = "00:00"
    metadata_max_bytes: int = 1024

    def check(self) -> None:
        if self.order not in ("desc", "asc"):
            raise BoardError(422, "bad_order", "order is 'desc' or 'asc'")
        if self.operator not in ("best", "latest", "incr"):
            raise BoardError(422, "bad_operator", "operator is 'best', 'latest' or 'incr'")
        for p in self.periods:
            if p not in periods.KINDS:
                raise BoardError(422, "bad_period", f"periods are {', '.join(periods.KINDS)}")
        if len(set(self.periods)) != len(self.periods):
            raise BoardError(422, "bad_period", "a period is listed twice")
        try:
            periods.reset_offset(self.reset_time)
        except ValueError as e:
            raise BoardError(422, "bad_reset_time", str(e)) from None
        if not 0 <= self.metadata_max_bytes <= 16384:
            raise BoardError(422, "bad_metadata_cap", "metadata_max_bytes is 0-16384")


def check_board_name(board: str) -> None:
    if not BOARD.fullmatch(board):
        raise BoardError(400, "bad_board_name", "board names are 1-64 of A-Z a-z 0-9 _ . -")


def check_player(player: str) -> None:
    if not NAME.fullmatch(player):
        raise BoardError(400, "bad_player", f"player ids are 1-64 of A-Z a-z 0-9 _ . : @ -, "
                         f"not {player[:80]!r}")


def _number(raw: Any) -> float | int:
    value = float(raw)
    return int(value) if value.is_integer() else value


def _cursor(score: Any, member: Any) -> str:
    raw = json.dumps([_text(score), _text(member)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _parse_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, member = json.loads(raw)
        float(score)
        if not (isinstance(score, str) and isinstance(member, str)) or len(member) <= TIEBREAK:
            raise ValueError
    except (ValueError, TypeError):
        raise BoardError(400, "bad_cursor", "cursor is not one this service gave out") from None
    return score, member


class Store:
    """The leaderboard's Redis-facing functions, named after what they store."""

    def __init__(self, redis: aioredis.Redis | Any, settings_ttl: float = 1.0,
                 redis_timeout: float = 5.0, direct: bool = True,
                 redis_chunk: int = CHUNK, coalesce: int = COALESCE,
                 idempotency_ttl: float = idempotency.TTL) -> None:
        """`direct=False` sends script calls through redis-py pipelines rather than the
        batcher's own connection; `redis_chunk` is its calls per write (see
        `leaderboard/batch.py`); `coalesce` is how many single-score submits to one board
        made in one loop pass may share a script call (1: none do)."""
        self.redis = redis
        # Board settings are read on every request and change rarely: another process's
        # change is seen within `settings_ttl` seconds.
        self.settings_ttl = settings_ttl
        self._settings: dict[str, tuple[float, Board]] = {}
        self._loading: dict[str, asyncio.Task[Board | None]] = {}
        self._submit = redis.register_script(scripts.SUBMIT)
        self._page = redis.register_script(scripts.PAGE)
        self._around = redis.register_script(scripts.AROUND)
        self._ranks = redis.register_script(scripts.RANKS)
        self._remove = redis.register_script(scripts.REMOVE)
        self._put_board = redis.register_script(scripts.PUT_BOARD)
        self._submit_once = redis.register_script(scripts.SUBMIT_ONCE)
        self._put_board_once = redis.register_script(scripts.PUT_BOARD_ONCE)
        self._remove_once = redis.register_script(scripts.REMOVE_ONCE)
        self.idempotency_ttl = idempotency_ttl
        # A cluster client routes each call by its keys; a single server takes batches.
        self._batcher = None if isinstance(redis, RedisCluster) else \
            ScriptBatcher(redis, redis_timeout, direct, redis_chunk)
        self.coalesce = coalesce
        self._merging: dict[str, _Merge] = {}  # board -> submits waiting for this pass's call

    async def aclose(self) -> None:
        """Close the script connection (the redis client stays open: it is the caller's)."""
        if self._batcher is not None:
            await self._batcher.aclose()

    async def _eval(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        if self._batcher is None:
            return await script(keys=keys, args=args)
        return await self._batcher.run(script, keys, args)

    async def put_board(self, name: str, board: Board,
                        idempotency_key: str | None = None) -> tuple[Board, bool]:
        """Create or change a board, in one script; order and operator of a board with
        entries are fixed. With an `idempotency_key` seen before, nothing is written and
        the first outcome is given again (`created` included)."""
        check_board_name(name)
        board.check()
        settings = json.dumps(asdict(board))
        key_list = [keys.config(name), keys.entries(name, "all")]
        if idempotency_key is None:
            reply = await self._eval(self._put_board, key_list, [settings])
        else:
            reply = await self._once(name, idempotency_key, "put", [settings],
                                     self._put_board_once, key_list, [settings])
        # Read again on next use: a replay wrote nothing, and the board may have changed since.
        self._settings.pop(name, None)
        if reply == b"ENTRIES":
            raise BoardError(409, "board_has_entries",
                             "order and operator cannot change once a board has entries")
        return board, bool(reply)

    async def get_board(self, name: str, missing_ok: bool = False) -> Board | None:
        check_board_name(name)
        raw = await self.redis.get(keys.config(name))
        if raw is None:
            if missing_ok:
                return None
            raise BoardError(404, "unknown_board", f"no board {name!r}; create it with PUT")
        return Board(**json.loads(raw))

    async def _board(self, name: str) -> Board:
        cached = self._settings.get(name)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        # One read per board however many requests find the settings stale at once.
        loading = self._loading.get(name)
        if loading is None:
            loading = self._loading[name] = asyncio.ensure_future(self.get_board(name))
            loading.add_done_callback(lambda _: self._loading.pop(name, None))
        board = await asyncio.shield(loading)
        assert board is not None
        if len(self._settings) > 10000:
            self._settings.clear()
        self._settings[name] = (now + self.settings_ttl, board)
        return board

    def _period(self, board: Board, period: str, at: float | None = None) -> str:
        try:
            return periods.resolve(period, board.periods, time.time() if at is None else at,
                                   board.reset_time)
        except LookupError as e:
            raise BoardError(400, "bad_period", str(e)) from None

    async def submit(self, name: str, entries: list[dict[str, Any]],
                     at: float | None = None,
                     idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """Write a batch of scores to every period of the board in one atomic script. With
        an `idempotency_key` seen before (within `idempotency_ttl`), nothing is written and
        the first submit's outcome is given again."""
        board = await self._board(name)
        if not 1 <= len(entries) <= MAX_BATCH:
            raise BoardError(422, "bad_batch", f"send 1-{MAX_BATCH} scores at once")
        seen: set[str] = set()
        argv_entries: list[Any] = []
        for e in entries:
            player, score = e["player"], e["score"]
            check_player(player)
            if player in seen:
                raise BoardError(422, "duplicate_player", f"{player!r} appears twice in one batch")
            seen.add(player)
            if isinstance(score, bool) or not isinstance(score, int | float) \
                    or not math.isfinite(score) or abs(score) > SCORE_LIMIT:
                raise BoardError(422, "bad_score", f"score of {player!r} must be a finite number "
                                 f"within ±{SCORE_LIMIT}")
            meta = e.get("metadata")
            meta_text = "" if meta is None else _META_JSON.encode(meta)
            if len(meta_text.encode()) > board.metadata_max_bytes:
                raise BoardError(422, "metadata_too_large", f"metadata of {player!r} is over "
                                 f"{board.metadata_max_bytes} bytes")
            argv_entries += [player, repr(float(score)), meta_text]
        if idempotency_key is not None:
            key_list, argv = self._submit_head(name, board, time.time() if at is None else at)
            raw = (await self._once(name, idempotency_key, "submit", argv_entries,
                                    self._submit_once, key_list,
                                    [*argv, len(entries), *argv_entries]))[0]
        elif at is None and len(entries) == 1 and self.coalesce > 1 \
                and self._batcher is not None:
            raw = await self._merged(name, board, entries[0]["player"], argv_entries)
        else:
            key_list, argv = self._submit_head(name, board, time.time() if at is None else at)
            raw = (await self._eval(self._submit, key_list,
                                    argv + [len(entries)] + argv_entries))[0]
        if isinstance(raw, bytes):  # 'RANGE <player>'
            player = raw.decode().split(" ", 1)[1]
            raise BoardError(422, "score_out_of_range", f"the total of {player!r} would "
                             f"leave ±{SCORE_LIMIT}; nothing was written")
        out = []
        names = ["all", *board.periods]
        width = 2 * len(names)
        for i, e in enumerate(entries):
            row = raw[width * i: width * (i + 1)]
            out.append({"player": e["player"], "periods": {
                names[p]: {"score": _number(row[2 * p]), "rank": int(row[2 * p + 1])}
                for p in range(len(names))}})
        return out

    async def _once(self, name: str, idempotency_key: str, operation: str, request: list[Any],
                    script: Any, key_list: list[Any], argv: list[Any]) -> Any:
        """The reply of `script` (a `scripts.once` script) run once on the board under
        `idempotency_key`: its own, or the first call's when the key was seen before.
        `operation` and `request` are what makes a call the same one again. The key is one
        the HTTP layer checked (stadium.once.KEY)."""
        fingerprint = idempotency.fingerprint(operation, *request)
        reply = await self._eval(script, [keys.once(name, idempotency_key), *key_list],
                                 [max(1, int(self.idempotency_ttl * 1000)), fingerprint, *argv])
        if isinstance(reply, list) and reply and reply[0] == b"SEEN":
            first, reply = msgpack.unpackb(reply[1], raw=True)
            if first.decode() != fingerprint:
                raise BoardError(422, idempotency.REUSED, "this Idempotency-Key was "
                                 "used for another request to this board")
        return reply

    def _submit_head(self, name: str, board: Board, now: float) -> tuple[list[Any], list[Any]]:
        """KEYS and the leading ARGV of a SUBMIT call at unix time `now`."""
        key_list = [keys.metadata(name), keys.periods(name), keys.entries(name, "all"),
                    keys.index(name, "all")]
        argv: list[Any] = [board.order, board.operator, int(now * 1000),
                           1 + len(board.periods), SCORE_LIMIT, "all", 0]
        for kind in board.periods:
            pid, end = periods.current(kind, now, board.reset_time)
            key_list += [keys.entries(name, pid), keys.index(name, pid)]
            # A period's entries are kept for one more period after it ends.
            argv += [pid, int(end + GRACE[kind])]
        return key_list, argv

    def _merged(self, name: str, board: Board, player: str,
                entry: list[Any]) -> asyncio.Future[Any]:
        """This submit's reply, from a script call it shares with the other single-score
        submits to the board in this loop pass: each is its own group in the call, so one
        failing fails alone. A player already in the call starts the next one, as does a
        full call (`coalesce`), which is written at once so Redis can start on it."""
        merge = self._merging.get(name)
        if merge is not None and (merge.board is not board or player in merge.players):
            self._send_merge(name, merge)
            merge = None
        if merge is None:
            key_list, argv = self._submit_head(name, board, time.time())
            merge = self._merging[name] = _Merge(board, key_list, argv)
            asyncio.get_running_loop().call_soon(self._send_merge, name, merge)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        merge.add(player, entry, future)
        if len(merge.waiting) >= self.coalesce:
            self._send_merge(name, merge)
        return future

    def _send_merge(self, name: str, merge: _Merge) -> None:
        if merge.sent:
            return
        merge.sent = True
        if self._merging.get(name) is merge:
            del self._merging[name]
        assert self._batcher is not None
        self._batcher.run(self._submit, merge.keys, merge.argv).add_done_callback(merge.answer)
        self._batcher.flush()

    async def page(self, name: str, period: str = "all", limit: int = 10,
                   cursor: str | None = None) -> dict[str, Any]:
        board = await self._board(name)
        if not 1 <= limit <= MAX_PAGE:
            raise BoardError(400, "bad_limit", f"limit is 1-{MAX_PAGE}")
        pid = self._period(board, period)
        cs, cm = _parse_cursor(cursor) if cursor else ("", "")
        raw = await self._eval(self._page, [keys.entries(name, pid), keys.metadata(name)],
                               [board.order, limit, cs, cm])
        entries = _entries(raw)
        nxt = _cursor(raw[1][-1], raw[1][-2]) if len(entries) == limit else None
        return {"board": name, "period": pid, "entries": entries, "next_cursor": nxt}

    async def around(self, name: str, player: str, period: str = "all",
                     n: int = 5) -> dict[str, Any]:
        board = await self._board(name)
        check_player(player)
        if not 0 <= n <= MAX_AROUND:
            raise BoardError(400, "bad_n", f"n is 0-{MAX_AROUND}")
        pid = self._period(board, period)
        raw = await self._eval(
            self._around, [keys.entries(name, pid), keys.index(name, pid), keys.metadata(name)],
            [board.order, player, n])
        if not raw:
            raise BoardError(404, "unknown_player", f"{player!r} has no score on {name} ({pid})")
        return {"board": name, "period": pid, "entries": _entries(raw)}

    async def player(self, name: str, player: str, period: str = "all") -> dict[str, Any]:
        found = await self.around(name, player, period, 0)
        return {"board": name, "period": found["period"], **found["entries"][0]}

    async def ranks(self, name: str, players: list[str], period: str = "all") -> dict[str, Any]:
        board = await self._board(name)
        if not 1 <= len(players) <= MAX_FRIENDS:
            raise BoardError(422, "bad_players", f"ask for 1-{MAX_FRIENDS} players")
        for p in players:
            check_player(p)
        pid = self._period(board, period)
        raw = await self._eval(self._ranks, [keys.entries(name, pid), keys.index(name, pid)],
                               [board.order, *players])
        found: list[dict[str, Any]] = []
        for i, p in enumerate(players):
            score, rank = raw[2 * i], raw[2 * i + 1]
            if rank is not None:
                found.append({"player": p, "rank": int(rank), "score": _number(score)})
        found.sort(key=lambda r: r["rank"])
        ranked = {r["player"] for r in found}
        return {"board": name, "period": pid, "entries": found,
                "missing": [p for p in players if p not in ranked]}

    async def boards(self, limit: int) -> dict[str, Any]:
        """The first `limit` boards by name, with their settings and all-time entry counts.
        One SCAN over the keyspace (every node of a cluster): an operator's read, not a
        player's."""
        names: set[str] = set()
        async for key in self.redis.scan_iter(match=keys.CONFIG_PATTERN, count=1000):
            names.add(keys.board_of_config(_text(key)))
            if len(names) > MAX_LISTED:
                break
        listed = sorted(n for n in names if BOARD.fullmatch(n))[:limit]
        settings = await asyncio.gather(*(self.get_board(n, missing_ok=True) for n in listed))
        counts = await asyncio.gather(*(self.redis.zcard(keys.entries(n, "all"))
                                        for n in listed))
        boards = [{"board": n, "order": b.order, "operator": b.operator, "periods": b.periods,
                   "entries": int(c)}
                  for n, b, c in zip(listed, settings, counts, strict=True) if b is not None]
        return {"boards": boards, "count": len(names), "more": len(names) > len(listed),
                "truncated": len(names) > MAX_LISTED}

    async def remove(self, name: str, player: str, idempotency_key: str | None = None) -> int:
        """Remove a player from every period of the board; returns how many held it. With an
        `idempotency_key` seen before, nothing is written and the first count is given again."""
        board = await self._board(name)
        check_player(player)
        pids = sorted(_text(p) for p in await self.redis.smembers(keys.periods(name)))
        key_list = [keys.metadata(name)]
        for pid in pids or ["all"]:
            key_list += [keys.entries(name, pid), keys.index(name, pid)]
        if idempotency_key is None:
            return int(await self._eval(self._remove, key_list, [board.order, player]))
        return int(await self._once(name, idempotency_key, "remove", [player],
                                    self._remove_once, key_list, [board.order, player]))


class _Merge:
    """Single-score submits to one board that go to Redis as one SUBMIT call."""

    __slots__ = ("board", "keys", "argv", "players", "waiting", "sent")

    def __init__(self, board: Board, key_list: list[Any], argv: list[Any]) -> None:
        self.board = board
        self.keys = key_list
        self.argv = argv
        self.players: set[str] = set()
        self.waiting: list[asyncio.Future[Any]] = []
        self.sent = False

    def add(self, player: str, entry: list[Any], future: asyncio.Future[Any]) -> None:
        self.players.add(player)
        self.argv += [1, *entry]
        self.waiting.append(future)

    def answer(self, done: asyncio.Future[Any]) -> None:
        """Hand each submit its own group's reply (or the call's error)."""
        error = done.exception()
        replies = None if error is not None else done.result()
        for i, future in enumerate(self.waiting):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                assert replies is not None
                future.set_result(replies[i])


def _entries(raw: list[Any]) -> list[dict[str, Any]]:
    """Entries from a script's {start, {member, score, ...}, {metadata, ...}}."""
    start, flat, metas = int(raw[0]), raw[1], raw[2]
    return [{"rank": start + i + 1, "player": _text(m)[TIEBREAK:], "score": _number(s),
             "metadata": None if meta is None else json.loads(meta)}
            for i, (m, s, meta) in enumerate(zip(flat[0::2], flat[1::2], metas, strict=True))]


_META_JSON = json.JSONEncoder(separators=(",", ":"))
# Seconds a period's keys outlive its end: one more period.
GRACE = {"daily": 86400, "weekly": 7 * 86400, "monthly": 31 * 86400}
