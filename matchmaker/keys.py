"""Where the matchmaker keeps its state in Redis. Every key of one queue shares the hash tag
`{Q}`, so one script can move a ticket between states atomically on Redis Cluster too.

| key                        | type   | holds                                                |
|----------------------------|--------|------------------------------------------------------|
| `mm:{Q}:waiting`           | zset   | waiting ticket ids, scored by creation time (ms)     |
| `mm:{Q}:t:{ticket}`        | hash   | `data` (JSON, fixed), `status`, `seats` (JSON),      |
|                            |        | `reason`, `no_shows` (JSON, after the seat report)   |
| `mm:{Q}:m:{match}`         | hash   | `data` (JSON: teams, players, room, seat expiry),    |
|                            |        | `seats` (JSON report), `result` once posted, with    |
|                            |        | `result_key` (its request's mark) and `rating: once` |
| `mm:{Q}:seating`           | zset   | match ids not yet reported, scored by seat expiry ms |
| `mm:{Q}:lease`             | string | id of the process running this queue's matcher (PX)  |
| `mm:{Q}:once:{H}`          | string | `pending|made ticket-id fingerprint`: the ticket of a |
|                            |        | request under an Idempotency-Key (H: digest of player |
|                            |        | and key; PX)                                          |
| `mm:{Q}:changes`           | stream | changes to waiting: `+` id, `-` ids (entries 0-N)    |
| `mm:player:{P}`            | string | `ticket-id unix-ms`: the ticket a player waits in (at |
|                            |        | most one, any queue) and since when                  |
| `mm:seat-rate:{P}`         | string | fresh seats player P asked for this minute (PX)      |
| `mm:ratings`               | hash   | player -> `mu sigma games`                            |
| `{mm:ratings}:rated:{M}`   | string | match M's rating update, once applied (JSON answer)  |
| `stadium:relays`           | hash   | relay URL -> `{"url", "load", "expires"}` (JSON)      |
| `stadium:match:{M}:joined` | hash   | player -> unix ms of their first join (1 day)        |

`stadium:relays` is written by the relays (relay/directory.py); entries past `expires`
(unix seconds) are ignored and removed. `stadium:match:{M}:joined` is written by the relay
that admits a player with a token for match M (relay/directory.py), read by the matcher.

Entries of `mm:{Q}:changes` have ids 0-1, 0-2, ... (`XADD ... 0-*`), so a reader that last saw
0-N knows entries were trimmed when the next it finds is not 0-(N+1). The stream keeps about
`CHANGES_KEPT` entries; a matcher further behind reads the waiting set in full.

`{mm:ratings}:rated:{M}` hashes to the slot of `mm:ratings` (the hash tag is that key's
name), so the script that updates ratings records in the same step that it did.

The scripts that take tickets out of waiting (match, fail, cancel) publish their ids,
space-separated, on the pub/sub channel `mm:ticket-events`; long-polls wait for that.

Ticket ids are `Q.<32 hex>` and match ids `Q.<16 hex>`, so either leads to its queue's keys.
"""

from __future__ import annotations

from stadium import once

RATINGS = "mm:ratings"
TICKET_EVENTS = "mm:ticket-events"  # pub/sub: ids of tickets that stopped waiting
RELAYS = "stadium:relays"  # the same name as relay/directory.py writes
CHANGES_KEPT = 100_000  # entries of a queue's change stream kept (about 5 MB)


def _tag(queue: str) -> str:
    return f"mm:{{{queue}}}"


def waiting(queue: str) -> str:
    return f"{_tag(queue)}:waiting"


def ticket(queue: str, ticket_id: str) -> str:
    return f"{_tag(queue)}:t:{ticket_id}"


def match(queue: str, match_id: str) -> str:
    return f"{_tag(queue)}:m:{match_id}"


def seating(queue: str) -> str:
    return f"{_tag(queue)}:seating"


def joined(match_id: str) -> str:
    """The same name as relay/directory.py writes: its own hash tag, the match id."""
    return f"stadium:match:{{{match_id}}}:joined"


def changes(queue: str) -> str:
    return f"{_tag(queue)}:changes"


def lease(queue: str) -> str:
    return f"{_tag(queue)}:lease"


def player(name: str) -> str:
    return f"mm:player:{name}"


def ticket_once(queue: str, player: str, idempotency_key: str) -> str:
    """The record of the ticket `player` created in `queue` under `idempotency_key`."""
    return f"{_tag(queue)}:once:{once.digest(player, idempotency_key)}"


def rated(match_id: str) -> str:
    """The record of a match's rating update: on the slot of RATINGS."""
    return f"{{{RATINGS}}}:rated:{match_id}"


def seat_rate(name: str) -> str:
    """A player's count of fresh seats in the current window (scripts.COUNT_IN_WINDOW)."""
    return f"mm:seat-rate:{name}"
