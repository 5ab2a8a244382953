"""One matching pass of one queue against Redis: read the waiting tickets, fail the ones
past their wait, run the matcher, seat each match on a relay and commit it atomically."""

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
                 secret: str | None, seat_ttl: float, lease_ttl: float) -> None:
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.owner = owner
        self.secret = secret
        self.seat_ttl = seat_ttl
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
        self.metrics.pass_seconds.labels(q.name).observe(time.perf_counter() - started)
        return committed

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
