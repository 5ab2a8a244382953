"""Tickets, matches, ratings and leases in Redis, each change one atomic script."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from matchmaker import keys, scripts
from matchmaker.queues import Queue
from matchmaker.ratings import Rating, rate
from stadium import once

PLAYER = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
REGION = re.compile(r"[A-Za-z0-9_-]{1,32}")
TICKET_ID = re.compile(r"([A-Za-z0-9_-]{1,64})\.[0-9a-f]{32}")
MATCH_ID = re.compile(r"([A-Za-z0-9_-]{1,64})\.[0-9a-f]{16}")
MAX_REGIONS = 16
MAX_LATENCY_MS = 10000.0
MAX_ATTRIBUTES_BYTES = 2048
RATE_RETRIES = 20
COMMIT_BATCH = 1000  # scripts per pipeline round trip when a pass commits many matches
# Seconds a player held by a ticket not stored yet counts as being queued (a request between
# its two steps); past them the hold is taken over (its request stopped half-way).
HOLD_GRACE = 15.0


@dataclass(frozen=True)
class Changes:
    """Changes to a queue's waiting set, as its change stream logs them."""

    last: int  # number of the last change read (0-N)
    added: list[bytes]  # ids that started waiting
    removed: list[bytes]  # ids that stopped waiting
    more: bool  # more changes may follow
    waiting: int  # tickets waiting once these changes are made (when `more` is False)


class MatchmakerError(Exception):
    """Bad input or a missing thing: `status`, `code` and `headers` go to the client as they
    are; `logged` is what the log says of it (the message unless it names what the log should
    not hold)."""

    def __init__(self, status: int, code: str, message: str, logged: str | None = None,
                 headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.logged = message if logged is None else logged
        self.headers = headers


class AlreadyQueued(MatchmakerError):
    """409 `already_queued`: `player` waits in `ticket_id`, which is theirs (`owned`: they
    are its first player) or a party leader's. The message names no ticket: the caller's
    own one is named by `naming`."""

    def __init__(self, player: str, ticket_id: str | None, owned: bool) -> None:
        super().__init__(409, "already_queued", f"{player} already waits in a ticket")
        self.player = player
        self.ticket_id = ticket_id
        self.owned = owned

    def naming(self) -> MatchmakerError:
        """The same refusal for the player's own caller: it names their ticket."""
        return MatchmakerError(409, "already_queued", f"{self.player} already waits in "
                               f"ticket {self.ticket_id}", logged=self.message)


NO_TICKET = "no such ticket, or not the caller's (it may have expired)"
"""The one 404 message for a ticket: one that does not exist and another player's read alike."""


@dataclass(frozen=True)
class Ticket:
    """What a ticket asks for; fixed once created."""

    id: str
    queue: str
    players: list[str]
    mu: list[float]
    sigma: list[float]
    regions: dict[str, float]
    created: float  # unix seconds
    attributes: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps({"id": self.id, "queue": self.queue, "players": self.players,
                           "mu": self.mu, "sigma": self.sigma, "regions": self.regions,
                           "created": self.created, "attributes": self.attributes},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> Ticket:
        d = json.loads(raw)
        return cls(d["id"], d["queue"], d["players"], d["mu"], d["sigma"], d["regions"],
                   d["created"], d.get("attributes") or {})


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _change_number(entry_id: bytes) -> int:
    """N of a change stream entry id 0-N."""
    return int(entry_id.split(b"-")[1])


def _joined(raw: dict[Any, Any]) -> dict[str, float]:
    """The relay's joined hash (player -> unix ms) as player -> unix seconds."""
    out = {}
    for k, v in raw.items():
        try:
            out[_text(k)] = int(v) / 1000
        except ValueError:
            continue  # not written by a relay: ignore rather than fail the report
    return out


def queue_of(ticket_id: str) -> str:
    m = TICKET_ID.fullmatch(ticket_id)
    if m is None:
        raise MatchmakerError(404, "unknown_ticket", NO_TICKET)
    return m.group(1)


def check_player(player: str) -> None:
    if not isinstance(player, str) or not PLAYER.fullmatch(player):
        raise MatchmakerError(400, "bad_player", "player ids are 1-64 of A-Z a-z 0-9 _ . : @ -, "
                              f"not {str(player)[:80]!r}")


class Store:
    """The matchmaker's Redis-facing functions, named after what they store."""

    def __init__(self, redis: Any, queues: dict[str, Queue], *, ticket_ttl: float = 600.0,
                 match_ttl: float = 86400.0, max_waiting: int = 200000,
                 idempotency_ttl: float = once.TTL) -> None:
        self.redis = redis
        self.queues = queues
        self.ticket_ttl = int(ticket_ttl)
        self.match_ttl = int(match_ttl)
        self.max_waiting = max_waiting
        self.idempotency_ttl = idempotency_ttl
        self._create = redis.register_script(scripts.CREATE)
        self._cancel = redis.register_script(scripts.CANCEL)
        self._match = redis.register_script(scripts.MATCH)
        self._fail = redis.register_script(scripts.FAIL)
        self._lease = redis.register_script(scripts.LEASE)
        self._swap = redis.register_script(scripts.SWAP)
        self._result = redis.register_script(scripts.RESULT)
        self._rate = redis.register_script(scripts.RATE)
        self._release = redis.register_script(scripts.RELEASE)
        self._changes = redis.register_script(scripts.CHANGES)
        self._read = redis.register_script(scripts.READ)
        self._count = redis.register_script(scripts.COUNT_IN_WINDOW)

    def queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise MatchmakerError(404, "unknown_queue", f"no queue {name[:80]!r}; queues: "
                                  f"{', '.join(sorted(self.queues))}")
        return q

    # --- tickets -----------------------------------------------------------------------
    async def create_ticket(self, queue_name: str, player: str, party: Sequence[str] = (),
                            regions: dict[str, float] | None = None,
                            attributes: dict[str, Any] | None = None,
                            idempotency_key: str | None = None) -> tuple[Ticket, bool]:
        """A waiting ticket for `player` and their party; every one of them must be free.
        Returns it, and whether this call created it. Under an `idempotency_key`, every
        attempt of the request makes the same ticket (its id is kept with the key): an
        attempt after one that made it writes nothing and gets it as it is now (404
        `unknown_ticket` once it has expired); one after an attempt that stopped half-way
        finishes it."""
        q, players, lat, attrs = self.check_ticket(queue_name, player, party, regions,
                                                   attributes)
        ticket_id = f"{q.name}.{secrets.token_hex(16)}"
        record: str | None = None
        if idempotency_key is not None:
            record = keys.ticket_once(q.name, player, idempotency_key)
            fingerprint = once.fingerprint(players, lat, attrs)
            ticket_id, made = await self._claim(record, ticket_id, fingerprint)
            if made:
                return await self._stored(ticket_id), False
        found = await self.ratings(players)
        ticket = Ticket(ticket_id, q.name, players, [r.mu for r in found],
                        [r.sigma for r in found], lat, time.time(), attrs)
        script_keys = [keys.ticket(q.name, ticket.id), keys.waiting(q.name), keys.changes(q.name)]
        args: list[Any] = [ticket.id, ticket.encode(), int(ticket.created * 1000),
                           int(q.max_wait) + self.ticket_ttl, self.max_waiting]
        if record is not None:
            script_keys.append(record)
            args += [max(1, int(self.idempotency_ttl * 1000)), fingerprint]
        held: list[str] = []  # the players this attempt took (not an earlier attempt)
        try:
            for p in players:
                if await self._hold(p, ticket.id):
                    held.append(p)
        except BaseException:
            await self.release(ticket.id, held)
            raise
        # Once the script is sent, the ticket may exist whatever the call raises (an answer
        # lost with Redis stalled): the holds stay for a retry to find (see _hold).
        reply = await self._create(keys=script_keys, args=args)
        if reply == 0:
            await self.release(ticket.id, held)
            raise MatchmakerError(503, "queue_full", f"{q.name} has {self.max_waiting} "
                                  "waiting tickets; try again later")
        if reply == 2:  # an earlier attempt of this request made it (or a re-sent call)
            return await self._stored(ticket.id), False
        return ticket, True

    async def _claim(self, record: str, ticket_id: str, fingerprint: str) -> tuple[str, bool]:
        """The ticket id of the request keyed by `record` (this `ticket_id` when it is the
        first attempt), and whether an attempt has made the ticket; 422 when the key was
        used for another request."""
        life = max(1, int(self.idempotency_ttl * 1000))
        for _ in range(3):
            if await self.redis.set(record, f"pending {ticket_id} {fingerprint}", nx=True,
                                    px=life):
                return ticket_id, False
            raw = await self.redis.get(record)
            if raw is None:
                continue  # expired in between: claim it again
            state, first_id, first = _text(raw).split(" ")
            if first != fingerprint:
                raise MatchmakerError(422, once.REUSED, "this Idempotency-Key was used for "
                                      "another ticket request of this player")
            return first_id, state == "made"
        raise MatchmakerError(503, "busy", "the Idempotency-Key kept expiring; try again")

    async def _stored(self, ticket_id: str) -> Ticket:
        """A ticket as stored; 404 once it has expired."""
        raw = await self.redis.hget(keys.ticket(queue_of(ticket_id), ticket_id), "data")
        if raw is None:
            raise MatchmakerError(404, "unknown_ticket", "the ticket this Idempotency-Key "
                                  "made has expired")
        return Ticket.decode(raw)

    def check_ticket(self, queue_name: str, player: str, party: Sequence[str] = (),
                     regions: dict[str, float] | None = None,
                     attributes: dict[str, Any] | None = None
                     ) -> tuple[Queue, list[str], dict[str, float], dict[str, Any]]:
        """What a ticket asks for, checked (400, 404, 422) without reading anything: its
        queue, players, latencies and attributes."""
        q = self.queue(queue_name)
        players = [player, *party]
        for p in players:
            check_player(p)
        if len(set(players)) != len(players):
            raise MatchmakerError(422, "duplicate_player", "a player is named twice")
        if len(players) > q.team_size:
            raise MatchmakerError(422, "party_too_large", f"a party of {len(players)} does not "
                                  f"fit a team of {q.team_size} in {q.name}")
        lat = self._regions(q, regions or {})
        attrs = attributes or {}
        if len(json.dumps(attrs)) > MAX_ATTRIBUTES_BYTES:
            raise MatchmakerError(422, "attributes_too_large",
                                  f"attributes are at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
        return q, players, lat, attrs

    def _regions(self, q: Queue, regions: dict[str, float]) -> dict[str, float]:
        if len(regions) > MAX_REGIONS:
            raise MatchmakerError(422, "too_many_regions", f"at most {MAX_REGIONS} regions")
        out: dict[str, float] = {}
        for name, ms in regions.items():
            if not REGION.fullmatch(name) or (q.regions and name not in q.regions):
                allowed = ", ".join(q.regions) if q.regions else "1-32 of A-Z a-z 0-9 _ -"
                raise MatchmakerError(422, "unknown_region",
                                      f"region {name[:40]!r}: {q.name} knows {allowed}")
            if isinstance(ms, bool) or not isinstance(ms, int | float) \
                    or not 0 <= ms <= MAX_LATENCY_MS:
                raise MatchmakerError(422, "bad_latency",
                                      f"latency to {name} must be 0-{MAX_LATENCY_MS:g} ms")
            out[name] = float(ms)
        return out

    async def _hold(self, player: str, ticket_id: str) -> bool:
        """Mark `player` as waiting in `ticket_id`, unless they wait in another ticket (or
        one being made: held less than HOLD_GRACE seconds ago by a ticket not stored yet);
        False when `ticket_id` held them already."""
        key = keys.player(player)
        value = f"{ticket_id} {int(time.time() * 1000)}"
        for _ in range(3):
            if await self._swap(keys=[key], args=["", value]):
                return True
            other = await self.redis.get(key)
            if other is None:
                continue
            other_id, _, since = _text(other).partition(" ")
            if other_id == ticket_id:
                return False  # an earlier attempt of this keyed request holds the player
            status = await self._status(other_id)
            if status == "waiting":
                raise AlreadyQueued(player, other_id, await self.owner(other_id) ==
                                    player)
            if status is None and since.isdigit() and \
                    time.time() * 1000 - int(since) < HOLD_GRACE * 1000:
                raise AlreadyQueued(player, None, False)  # being queued right now
            # A finished ticket whose holder was not released, or one never stored (a
            # process stopped between the steps): take the player over, if nobody else did.
            if await self._swap(keys=[key], args=[other_id, value]):
                return True
        raise AlreadyQueued(player, None, False)

    async def release(self, ticket_id: str, players: Sequence[str]) -> None:
        """The players no longer wait in `ticket_id` (matched, cancelled, failed)."""
        for p in players:
            await self._swap(keys=[keys.player(p)], args=[ticket_id, ""])

    async def release_all(self, tickets: Sequence[tuple[str, Sequence[str]]]) -> None:
        """`release` for many (ticket id, players) at once: one round trip per 1,000."""
        swaps = [(tid, p) for tid, players in tickets for p in players]
        for i in range(0, len(swaps), COMMIT_BATCH):
            pipe = self.redis.pipeline(transaction=False)
            for tid, p in swaps[i:i + COMMIT_BATCH]:
                pipe.eval(scripts.SWAP, 1, keys.player(p), tid, "")
            await pipe.execute()

    async def _status(self, ticket_id: str) -> str | None:
        try:
            q = queue_of(ticket_id)
        except MatchmakerError:
            return None
        raw = await self.redis.hget(keys.ticket(q, ticket_id), "status")
        return None if raw is None else _text(raw)

    async def owner(self, ticket_id: str) -> str | None:
        """The player a ticket belongs to (the first of its players), None when it is gone;
        one small read."""
        q = queue_of(ticket_id)
        raw = await self.redis.hget(keys.ticket(q, ticket_id), "data")
        return None if raw is None else Ticket.decode(raw).players[0]

    async def ticket(self, ticket_id: str) -> dict[str, Any]:
        """What a client sees of its ticket: status, and its seats once matched."""
        q = queue_of(ticket_id)
        raw = await self.redis.hgetall(keys.ticket(q, ticket_id))
        if not raw:
            raise MatchmakerError(404, "unknown_ticket", NO_TICKET)
        h = {_text(k): _text(v) for k, v in raw.items()}
        t = Ticket.decode(h["data"])
        view: dict[str, Any] = {"id": t.id, "queue": t.queue, "status": h["status"],
                                "players": t.players, "created": t.created,
                                "regions": t.regions, "attributes": t.attributes}
        if "seats" in h:
            seats = json.loads(h["seats"])
            view["match_id"] = seats[t.players[0]]["match_id"]
            view["seats"] = seats
        if "reason" in h:
            view["reason"] = h["reason"]
        if "no_shows" in h:
            view["no_shows"] = json.loads(h["no_shows"])
        return view

    async def cancel(self, ticket_id: str) -> dict[str, Any]:
        """Cancel a waiting ticket. Atomic against the matcher: either the ticket is matched
        and this raises 409 `already_matched`, or it is cancelled and never matched."""
        q = queue_of(ticket_id)
        before = await self._cancel(
            keys=[keys.ticket(q, ticket_id), keys.waiting(q), keys.changes(q)],
            args=[ticket_id, self.ticket_ttl])
        if before is None:
            raise MatchmakerError(404, "unknown_ticket", NO_TICKET)
        before = _text(before)
        if before in ("matched", "no_show"):
            raise MatchmakerError(409, "already_matched",
                                  "the ticket was matched before the cancel arrived")
        if before == "failed":
            raise MatchmakerError(409, "already_failed", "the ticket had already failed")
        view = await self.ticket(ticket_id)
        if before == "waiting":
            await self.release(ticket_id, view["players"])
        return view

    # --- the matcher's side ------------------------------------------------------------
    async def waiting(self, queue: str) -> list[bytes]:
        """The id of every waiting ticket, oldest first, as Redis sends it: a pass compares
        all of them with the ones it has read before, and scores or decoding would cost
        more than that (redis-py pairs scores up in Python: 130 ms at 100,000)."""
        raw: list[bytes] = await self.redis.zrange(keys.waiting(queue), 0, -1)
        return raw

    async def last_change(self, queue: str) -> int:
        """The number of the queue's latest change to its waiting set (0 for none yet)."""
        raw = await self.redis.xrevrange(keys.changes(queue), "+", "-", count=1)
        return _change_number(raw[0][0]) if raw else 0

    async def changes(self, queue: str, after: int, limit: int = 10000) -> Changes | None:
        """Up to `limit` changes to the waiting set after change number `after`. None when
        some of them were trimmed or the log started again: then only the whole waiting set
        tells what waits."""
        top, count, raw = await self._changes(keys=[keys.changes(queue), keys.waiting(queue)],
                                              args=[after, limit])
        if (0 if top is None else _change_number(top)) < after:
            return None  # the stream was deleted and started again
        if not raw:
            return Changes(after, [], [], False, int(count))
        if _change_number(raw[0][0]) != after + 1:
            return None
        added: list[bytes] = []
        removed: list[bytes] = []
        for _, (op, ids) in raw:  # each entry holds one field: + id, or - ids
            if op == b"+":
                added.append(ids)
            else:
                removed += ids.split()
        return Changes(_change_number(raw[-1][0]), added, removed, len(raw) == limit,
                       int(count))

    async def tickets(self, queue: str, ids: Sequence[str]) -> list[Ticket | None]:
        """The tickets of these ids (None for one that is gone): one script call per 1,000,
        not a command each; their keys share the queue's hash tag, so on a cluster too."""
        out: list[Ticket | None] = []
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            found = await self._read(keys=[keys.ticket(queue, tid) for tid in chunk])
            out += [None if raw is None else Ticket.decode(raw) for raw in found]
        return out

    async def commit_matches(self, queue: str, matches: Sequence[tuple[dict[str, Any],
                                                                     dict[str, dict[str, Any]]]]
                             ) -> list[list[str]]:
        """Per (match, ticket id -> seats): store the match and mark its tickets matched with
        their seats, all or nothing; a match with `seat_expires` waits in the queue's seating
        set until then. One atomic script per match, sent together (a pipeline, not a
        transaction). Returns, per match, the ticket ids that were no longer waiting (then
        nothing of that match was written)."""
        out: list[list[str]] = []
        for i in range(0, len(matches), COMMIT_BATCH):
            pipe = self.redis.pipeline(transaction=False)
            for match, seats in matches[i:i + COMMIT_BATCH]:
                ticket_ids = list(seats)
                expires = match.get("seat_expires")
                args: list[Any] = [json.dumps(match, separators=(",", ":")), self.match_ttl,
                                   self.ticket_ttl, match["id"],
                                   "" if expires is None else int(expires * 1000)]
                for tid in ticket_ids:
                    args += [tid, json.dumps(seats[tid], separators=(",", ":"))]
                script_keys = [keys.waiting(queue), keys.match(queue, match["id"]),
                               keys.seating(queue), keys.changes(queue),
                               *(keys.ticket(queue, t) for t in ticket_ids)]
                # EVAL, not EVALSHA: a cluster pipeline does not load scripts first
                pipe.eval(scripts.MATCH, len(script_keys), *script_keys, *args)
            out += [[_text(g) for g in gone] for gone in await pipe.execute()]
        return out

    async def due_seatings(self, queue: str, until: float, limit: int) -> list[str]:
        """Ids of up to `limit` matches whose seats expired before `until` (unix seconds)."""
        raw = await self.redis.zrangebyscore(keys.seating(queue), "-inf", int(until * 1000),
                                             start=0, num=limit)
        return [_text(m) for m in raw]

    async def seating(self, queue: str, match_ids: Sequence[str]
                      ) -> list[tuple[dict[str, Any] | None, dict[str, float]]]:
        """Per match: its record (None once expired) and who joined: player -> unix seconds."""
        pipe = self.redis.pipeline(transaction=False)
        for mid in match_ids:
            pipe.hget(keys.match(queue, mid), "data")
            pipe.hgetall(keys.joined(mid))
        raw = await pipe.execute()
        return [(None if data is None else json.loads(data), _joined(joined))
                for data, joined in zip(raw[::2], raw[1::2], strict=True)]

    async def release_seats(self, queue: str, match_id: str, seats: dict[str, Any],
                            no_shows: dict[str, tuple[str, list[str]]]) -> bool:
        """Write the match's seat report and mark tickets with their no-shows (ticket id ->
        (new status or '' to keep it, players)); False when already released."""
        args: list[Any] = [match_id, json.dumps(seats, separators=(",", ":"))]
        for status, players in no_shows.values():
            args += [status, json.dumps(players)]
        return bool(await self._release(
            keys=[keys.seating(queue), keys.match(queue, match_id),
                  *(keys.ticket(queue, t) for t in no_shows)], args=args))

    async def fail(self, queue: str, ticket_ids: Sequence[str], reason: str) -> int:
        if not ticket_ids:
            return 0
        return int(await self._fail(
            keys=[keys.waiting(queue), keys.changes(queue),
                  *(keys.ticket(queue, t) for t in ticket_ids)],
            args=[reason, self.ticket_ttl, *ticket_ids]))

    async def lease(self, queue: str, owner: str, ttl: float) -> bool:
        """Take or keep the queue's matcher lease for `ttl` seconds."""
        return bool(await self._lease(keys=[keys.lease(queue)], args=[owner, int(ttl * 1000)]))

    async def relays(self) -> dict[str, Any]:
        """The relay directory as relays wrote it: URL -> JSON entry."""
        raw = await self.redis.hgetall(keys.RELAYS)
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def forget_relays(self, urls: Sequence[str]) -> None:
        if urls:
            await self.redis.hdel(keys.RELAYS, *urls)

    async def match(self, match_id: str) -> dict[str, Any]:
        m = MATCH_ID.fullmatch(match_id)
        raw = None if m is None else await self.redis.hgetall(keys.match(m.group(1), match_id))
        if not raw:
            raise MatchmakerError(404, "unknown_match", f"no match {match_id[:80]!r}")
        h = {_text(k): _text(v) for k, v in raw.items()}
        out: dict[str, Any] = json.loads(h["data"])
        del out["tickets"]  # a ticket id reads every seat of that ticket: not for everyone
        expires = out.pop("seat_expires", None)
        if "seats" in h:
            out["seats"] = json.loads(h["seats"])
        elif expires is None:  # no --secret: the relay cannot tell who joined
            out["seats"] = {"status": "untracked"}
        else:
            players = {p for team in out["teams"] for p in team}
            joined = _joined(await self.redis.hgetall(keys.joined(match_id)))
            out["seats"] = {"status": "seating", "expires": expires, "no_shows": [],
                            "joined": {p: t for p, t in joined.items() if p in players}}
        out["result"] = json.loads(h["result"]) if "result" in h else None
        return out

    async def seat_record(self, match_id: str) -> tuple[dict[str, Any], dict[str, Any] | None,
                                                        bool]:
        """A match as stored (teams, room, relay), its seat report once written, and whether
        its result is in; 404 `unknown_match` when it is not kept (any more)."""
        m = MATCH_ID.fullmatch(match_id)
        raw = None if m is None else await self.redis.hmget(
            keys.match(m.group(1), match_id), ["data", "seats", "result"])
        if raw is None or raw[0] is None:
            raise MatchmakerError(404, "unknown_match", f"no match {match_id[:80]!r}")
        report = None if raw[1] is None else json.loads(raw[1])
        return json.loads(raw[0]), report, raw[2] is not None

    async def count_fresh_seat(self, player: str, window: float) -> tuple[int, float]:
        """One more fresh seat asked for by `player`, counted in fixed windows of `window`
        seconds shared by every process: how many this window holds (this one included), and
        the seconds until it ends."""
        n, left = await self._count(keys=[keys.seat_rate(player)], args=[int(window * 1000)])
        return int(n), int(left) / 1000

    # --- ratings and results -----------------------------------------------------------
    async def ratings(self, players: Sequence[str]) -> list[Rating]:
        raw = await self.redis.hmget(keys.RATINGS, list(players))
        return [Rating.decode(r) for r in raw]

    async def report(self, match_id: str, ranks: Sequence[int],
                     idempotency_key: str | None = None) -> dict[str, Any]:
        """Record a match's result once and update every player's rating (a match with bots
        rates its humans against the bots' recorded ratings). Again with the first result's
        `idempotency_key` (and ranks): the first answer, nothing written. A match's ratings
        are updated once, also when a process stopped between the result and the ratings:
        whoever posts next finishes it."""
        m = MATCH_ID.fullmatch(match_id)
        if m is None or m.group(1) not in self.queues:
            raise MatchmakerError(404, "unknown_match", f"no match {match_id[:80]!r}")
        teams_count = self.queues[m.group(1)].teams
        if len(ranks) != teams_count or any(isinstance(r, bool) or not isinstance(r, int)
                                            or not 1 <= r <= teams_count for r in ranks):
            raise MatchmakerError(422, "bad_ranks", f"give one rank (1-{teams_count}) per "
                                  f"team, in team order; 1 is the winner, equal ranks a draw")
        ranks = list(ranks)
        # marks this request's result: a retry under the key, or the same call re-sent by
        # the Redis client, finds its own mark
        mark = secrets.token_hex(16) if idempotency_key is None else \
            once.digest(idempotency_key)
        found = await self._result(keys=[keys.match(m.group(1), match_id)],
                                   args=[json.dumps({"ranks": ranks}), mark])
        if found is None:
            raise MatchmakerError(404, "unknown_match", f"no match {match_id!r} (or it "
                                  "expired)")
        match = json.loads(found[0])
        if found[1] is None:
            return await self._rate_once(match_id, match, ranks)
        first = json.loads(found[1])["ranks"]
        reported = MatchmakerError(409, "result_reported",
                                   f"match {match_id} already has a result")
        if _text(found[3]) != "once":  # a result of an older version, rated when posted
            raise reported
        answer = await self._rate_once(match_id, match, first)
        if _text(found[2]) != mark:
            raise reported
        if first != ranks:
            raise MatchmakerError(422, once.REUSED, "this Idempotency-Key was used for another "
                                  "result of this match")
        return answer

    async def _rate_once(self, match_id: str, match: dict[str, Any],
                         ranks: list[int]) -> dict[str, Any]:
        """The match's rating update, made now unless it was made before: its answer."""
        done = await self.redis.get(keys.rated(match_id))
        if done is not None:
            return dict(json.loads(done))
        teams: list[list[str]] = match["teams"]
        # Bots play with the ratings the match recorded; only the humans' new ones are kept.
        # A team may be all bots, never empty.
        bots = [[Rating(b["mu"], b["sigma"]) for b in team]
                for team in match.get("bots") or [[] for _ in teams]]
        players = [p for team in teams for p in team]
        for _ in range(RATE_RETRIES):
            old_raw = await self.redis.hmget(keys.RATINGS, players)
            old = [Rating.decode(r) for r in old_raw]
            grouped, i = [], 0
            for team, team_bots in zip(teams, bots, strict=True):
                grouped.append(old[i:i + len(team)] + team_bots)
                i += len(team)
            new = [r for team, rated in zip(teams, rate(grouped, ranks), strict=True)
                   for r in rated[:len(team)]]
            answer = {"match_id": match_id, "ranks": ranks,
                      "ratings": {p: {"mu": r.mu, "sigma": r.sigma, "games": r.games}
                                  for p, r in zip(players, new, strict=True)}}
            args: list[Any] = [json.dumps(answer), self.match_ttl, len(players), *players,
                               *("" if r is None else _text(r) for r in old_raw),
                               *(r.encode() for r in new)]
            applied = await self._rate(keys=[keys.RATINGS, keys.rated(match_id)], args=args)
            if applied:
                return dict(json.loads(applied))
        raise MatchmakerError(503, "busy", "ratings kept changing; post the result again")

