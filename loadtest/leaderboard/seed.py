"""Seed a benchmark board straight into Redis, in the layout the submit script writes
(`leaderboard/keys.py`): a million players in about a third of the time the API takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leaderboard import keys, periods
from leaderboard.store import GRACE, Board

CHUNK = 1000  # players per pipeline, and per millisecond of tiebreak, as API batches of 1,000


async def seed_board(redis: Any, name: str, board: Board, scores: Sequence[tuple[str, int]],
                     at: float) -> None:
    """Write `scores` (player, score; players distinct and new to the board) to every period
    of board `name` as if submitted at unix time `at`, chunk i reaching its score at
    `at` + i ms; the board's settings must already be stored."""
    targets: list[tuple[str, int]] = [("all", 0)]
    for kind in board.periods:
        pid, end = periods.current(kind, at, board.reset_time)
        targets.append((pid, int(end + GRACE[kind])))
    base = int(at * 1000)
    for n, i in enumerate(range(0, len(scores), CHUNK)):
        chunk = scores[i:i + CHUNK]
        members = {p: keys.member(board.order, base + n, p) for p, _ in chunk}
        entries = {members[p]: s for p, s in chunk}
        pipe = redis.pipeline(transaction=False)
        for pid, expire_at in targets:
            pipe.zadd(keys.entries(name, pid), entries)
            pipe.hset(keys.index(name, pid), mapping=members)
            if expire_at:
                pipe.expireat(keys.entries(name, pid), expire_at)
                pipe.expireat(keys.index(name, pid), expire_at)
        await pipe.execute()
    await redis.sadd(keys.periods(name), *(pid for pid, _ in targets))
