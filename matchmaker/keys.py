"""Where the matchmaker keeps its state in Redis. Every key of one queue shares the hash tag
`{Q}`, so one script can move a ticket between states atomically on Redis Cluster too.

| key                        | type   | holds                                                  |
|----------------------------|--------|--------------------------------------------------------|
| `mm:{Q}:waiting`           | zset   | waiting ticket ids, scored by creation time (ms)       |
| `mm:{Q}:t:{ticket}`        | hash   | `data` (JSON, fixed), `status`, `seats` (JSON), `reason` |
| `mm:{Q}:m:{match}`         | hash   | `data` (JSON: teams, players, room), `result` once posted |
| `mm:{Q}:lease`             | string | id of the process running this queue's matcher (PX)    |
| `mm:player:{P}`            | string | the ticket a player waits in (at most one, any queue)  |
| `mm:ratings`               | hash   | player -> `mu sigma games`                              |
| `stadium:relays`           | hash   | relay URL -> `{"url", "load", "expires"}` (JSON)        |

`stadium:relays` is written by the relays (relay/directory.py); entries past `expires`
(unix seconds) are ignored and removed.

Ticket ids are `Q.<32 hex>` and match ids `Q.<16 hex>`, so either leads to its queue's keys.
"""

from __future__ import annotations

RATINGS = "mm:ratings"
RELAYS = "stadium:relays"  # the same name as relay/directory.py writes


def _tag(queue: str) -> str:
    return f"mm:{{{queue}}}"


def waiting(queue: str) -> str:
    return f"{_tag(queue)}:waiting"


def ticket(queue: str, ticket_id: str) -> str:
    return f"{_tag(queue)}:t:{ticket_id}"


def match(queue: str, match_id: str) -> str:
    return f"{_tag(queue)}:m:{match_id}"


def lease(queue: str) -> str:
    return f"{_tag(queue)}:lease"


def player(name: str) -> str:
    return f"mm:player:{name}"
