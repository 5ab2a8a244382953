"""One matching pass of one queue against Redis: read the waiting tickets, fail the ones
past their wait, run the matcher, seat each match on a relay and commit it atomically, and
release the seats of matches past their seat expiry, reporting who never joined."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence

import numpy as np

from matchmaker.matcher import Matches, Pool, match
from matchmaker.metrics import Metrics
from matchmaker.queues import Queue
from matchmaker.seats import live_relays, pick, seat_players
from matchmaker.store import Store, Ticket

log = logging.getLogger("stadium.matchmaker")

RELEASE_BATCH = 500  # matches released per pass; a backlog is worked off over the next passes


def pool_of(tickets: Sequence[Ticket], now: float) -> tuple[Pool, list[str]]:
    """The matcher's columns for these tickets, and the region name of each latency column."""
    n = len(tickets)
    size = np.fromiter((len(t.players) for t in tickets), np.int64, n)
    mu = np.fromiter((sum(t.mu) for t in tickets), np.float64, n)
    sigma2 = np.fromiter((sum(s * s for s in t.sigma) for t in tickets), np.float64, n)
    wait = now - np.fromiter((t.created for t in tickets), np.float64, n)
    names = sorted({r for t in tickets for r in t.regions})
    column = {name: i for i, name in enumerate(names)}
    latency = np.zeros((n, len(names)))
    for i, t in enumerate(tickets):
        if t.regions:  # a ticket without regions plays anywhere: its row stays zero
            latency[i] = np.inf
            for name, ms in t.regions.items():
                latency[i, column[name]] = ms
    return Pool(mu / np.maximum(size, 1), mu, sigma2, size, np.maximum(wait, 0.0),
                latency), names


class QueueMatcher:
    """Runs the passes of one queue while this process holds the queue's lease."""

    def __init__(self, store: Store, queue: Queue, metrics: Metrics, *, owner: str,
                 secret: str | None, seat_ttl: float, lease_ttl: float,
                 seat_grace: float = 7.0) -> None:
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.owner = owner
        self.secret = secret
        self.seat_ttl = seat_ttl
        self.seat_grace = seat_grace
        self.lease_ttl = lease_ttl
        self._cache: dict[str, Ticket] = {}  # tickets never change once created
        self._warned_no_relay = 0.0

    async def step(self) -> int:
        """One pass; returns the number of matches committed (0 without the lease)."""
        q = self.queue
        if not await self.store.lease(q.name, self.owner, self.lease_ttl):
            self._cache.clear()  # another process runs this queue; re-read if we take over
            return 0
        started = time.perf_counter()
        waiting = await self.store.waiting(q.name)
        ids = [tid for tid, _ in waiting]
        new = [tid for tid in ids if tid not in self._cache]
        for tid, ticket in zip(new, await self.store.tickets(q.name, new), strict=True):
            if ticket is not None:
                self._cache[tid] = ticket
        if len(self._cache) > len(ids):
            live = set(ids)
            self._cache = {k: v for k, v in self._cache.items() if k in live}
        tickets = [self._cache[tid] for tid in ids if tid in self._cache]
        now = time.time()
        late = [t for t in tickets if now - t.created > q.max_wait]
        if late:
            await self._fail(late, "timeout")
            tickets = [t for t in tickets if now - t.created <= q.max_wait]
        self.metrics.waiting.labels(q.name).set(len(tickets))
        committed = 0
        if len(tickets) > 0:
            pool, regions = pool_of(tickets, now)
            found = match(pool, q.rules())
            if len(found):
                committed = await self._seat(tickets, found, regions, now)
        if self.secret is not None:
            await self._release_seats(time.time())
        self.metrics.pass_seconds.labels(q.name).observe(time.perf_counter() - started)
        return committed

    async def _release_seats(self, now: float) -> int:
        """Report the matches whose seats expired more than `seat_grace` ago: who joined
        (the relay wrote it) and who did not; a no-show's ticket says so. Returns how many."""
        q = self.queue
        due = await self.store.due_seatings(q.name, now - self.seat_grace, RELEASE_BATCH)
        if not due:
            return 0
        records = await self.store.seating(q.name, due)
        tickets: dict[str, Ticket | None] = {}
        wanted = sorted({tid for r, _ in records if r is not None for tid in r["tickets"]})
        for tid, t in zip(wanted, await self.store.tickets(q.name, wanted), strict=True):
            tickets[tid] = t
        released = 0
        for match_id, (record, joined) in zip(due, records, strict=True):
            if record is None:  # the match expired (--match-ttl): nothing left to report
                await self.store.release_seats(q.name, match_id, {}, {})
                continue
            players = [p for team in record["teams"] for p in team]
            taken = {p: joined[p] for p in players if p in joined}
            missing = [p for p in players if p not in taken]
            marks: dict[str, tuple[str, list[str]]] = {}
            for tid in record["tickets"]:
                t = tickets.get(tid)
                absent = [] if t is None else [p for p in t.players if p not in taken]
                if t is not None and absent:  # a whole party away makes the ticket a
                    # no-show; a party with someone in stays matched and lists the absent
                    marks[tid] = ("no_show" if len(absent) == len(t.players) else "", absent)
            report = {"status": "incomplete" if missing else "seated",
                      "expires": record.get("seat_expires"), "joined": taken,
                      "no_shows": missing, "released": now}
            if not await self.store.release_seats(q.name, match_id, report, marks):
                continue  # another process released it first
            released += 1
            if missing:
                self.metrics.seats_released.labels(q.name).inc(len(missing))
                self.metrics.matches_incomplete.labels(q.name).inc()
                log.info("match %s: %d of %d seats not taken by their expiry: %s", match_id,
                         len(missing), len(players), ",".join(missing))
        return released

    async def _fail(self, tickets: list[Ticket], reason: str) -> None:
        n = await self.store.fail(self.queue.name, [t.id for t in tickets], reason)
        for t in tickets:
            self._cache.pop(t.id, None)
            await self.store.release(t.id, t.players)
        self.metrics.tickets.labels(self.queue.name, reason).inc(n)

    async def _seat(self, tickets: list[Ticket], found: Matches, regions: list[str],
                    now: float) -> int:
        q = self.queue
        relays, dead = live_relays(await self.store.relays(), now)
        await self.store.forget_relays(dead)
        committed = 0
        for g in range(len(found)):
            relay = pick(relays)
            if relay is None:
                self.metrics.no_relay.labels(q.name).inc(len(found) - g)
                if time.monotonic() - self._warned_no_relay > 10:
                    self._warned_no_relay = time.monotonic()
                    log.warning("%s: %d matches wait: no relay in the directory (start a "
                                "relay with --redis-url)", q.name, len(found) - g)
                break
            members = [(tickets[int(i)], int(t)) for i, t in
                       zip(found.tickets[g], found.team[g], strict=True) if i >= 0]
            teams: list[list[str]] = [[] for _ in range(q.teams)]
            for ticket, team in members:
                teams[team].extend(ticket.players)
            match_id = f"{q.name}.{secrets.token_hex(8)}"
            seats = seat_players(relay, self.secret, room_type=q.room_type, room_id=match_id,
                                 match_id=match_id, teams=teams, ttl=self.seat_ttl, now=now)
            region = regions[found.region[g]] if found.region[g] >= 0 else None
            record = {"id": match_id, "queue": q.name, "room_type": q.room_type,
                      "room_id": match_id, "relay": relay.url, "teams": teams,
                      "tickets": [t.id for t, _ in members], "created": now,
                      "region": region, "worst_latency_ms": float(found.worst_latency[g]),
                      "rating_spread": float(found.spread[g]),
                      "seat_expires": None if self.secret is None else now + self.seat_ttl,
                      "win_probability": [float(p) for p in found.win[g]]}
            by_ticket = {t.id: {p: seats[p] for p in t.players} for t, _ in members}
            gone = await self.store.commit_match(q.name, record, by_ticket)
            if gone:  # cancelled meanwhile: nothing was written; the rest wait on
                for tid in gone:
                    self._cache.pop(tid, None)
                continue
            committed += 1
            for ticket, _ in members:
                self._cache.pop(ticket.id, None)
                await self.store.release(ticket.id, ticket.players)
                self.metrics.wait.labels(q.name).observe(now - ticket.created)
            self.metrics.tickets.labels(q.name, "matched").inc(len(members))
            self.metrics.matches.labels(q.name).inc()
            self.metrics.spread.labels(q.name).observe(float(found.spread[g]))
            self.metrics.favourite.labels(q.name).observe(float(found.win[g].max()))
            if region is not None:
                self.metrics.latency.labels(q.name).observe(float(found.worst_latency[g]))
            log.info("match %s: %s on %s (spread %.2f, win %s)", match_id,
                     " vs ".join(",".join(t) for t in teams), relay.url,
                     found.spread[g], "/".join(f"{p:.2f}" for p in found.win[g]))
        return committed
