"""Where a board lives in Redis. Every key of one board shares the hash tag `{board}`,
so a board's keys sit on one slot and one script can touch them all on Redis Cluster.

| key                          | type   | holds                                              |
|------------------------------|--------|----------------------------------------------------|
| `lb:{B}:cfg`                 | string | the board's settings (JSON)                        |
| `lb:{B}:z:{period}`          | zset   | entries of one period; member = tiebreak + player  |
| `lb:{B}:i:{period}`          | hash   | player -> its member in that period's zset         |
| `lb:{B}:meta`                | hash   | player -> metadata (JSON text)                     |
| `lb:{B}:periods`             | set    | every period id written (to remove a player from all) |
| `lb:{B}:once:{K}`            | string | a write's outcome under Idempotency-Key K (hashed) |

`period` is `all`, or `d:2026-11-23`, `w:2026-W47`, `m:2026-11`.

A zset member is a 13-digit tiebreak then the player id (see `member`); the submit script
writes the same encoding (`leaderboard/scripts.py`).
"""

from __future__ import annotations

from stadium import once as idempotency


def _tag(board: str) -> str:
    return f"lb:{{{board}}}"


CONFIG_PATTERN = "lb:{*}:cfg"  # SCAN MATCH for every board's settings key (listing boards)


def board_of_config(key: str) -> str:
    """The board a `config` key belongs to."""
    return key[len("lb:{"):-len("}:cfg")]


def config(board: str) -> str:
    return f"{_tag(board)}:cfg"


def entries(board: str, period: str) -> str:
    return f"{_tag(board)}:z:{period}"


def index(board: str, period: str) -> str:
    return f"{_tag(board)}:i:{period}"


def metadata(board: str) -> str:
    return f"{_tag(board)}:meta"


def periods(board: str) -> str:
    return f"{_tag(board)}:periods"


def member(order: str, at_ms: int, player: str) -> str:
    """The zset member of `player` for a score reached at unix time `at_ms` (ms): among equal
    scores, byte order of members puts whoever reached the score first ahead."""
    return f"{9999999999999 - at_ms if order == 'desc' else at_ms:013d}{player}"


def once(board: str, idempotency_key: str) -> str:
    """Where the outcome of a write to the board (a submit, a change of its settings, a
    player's removal) made with `idempotency_key` is kept (the key hashed: any printable
    text, one length). One namespace per board, whatever the write."""
    return f"{_tag(board)}:once:{idempotency.digest(idempotency_key)}"
