"""One matching pass of one queue against Redis: read the waiting tickets, fail the ones
past their wait (or match them with bots), run the matcher, seat each match on a relay and
commit it atomically, and release the seats of matches past their seat expiry."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from itertools import count, repeat
from typing import Any

import numpy as np

from matchmaker.bots import BotMatches, fill
from matchmaker.matcher import Ints, Matches, Pool, match
from matchmaker.metrics import Metrics
from matchmaker.queues import Queue
from matchmaker.ratings import SIGMA
from matchmaker.seats import live_relays, pick, seat_players
from matchmaker.store import Store, Ticket
from stadium.keys import SigningKey

log = logging.getLogger("stadium.matchmaker")

RELEASE_BATCH = 500  # matches released per pass; a backlog is worked off over the next passes
READ_BATCH = 1000  # new tickets read and turned into rows per await
BOTS_BATCH = 2000  # expired tickets matched with bots per pass (oldest first); the rest wait
CHANGES_BATCH = 10000  # changes to waiting read per round trip
REREAD_SECONDS = 300.0  # the whole waiting set is read this often, whatever the changes say


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


class PoolColumns:
    """The matcher's columns for one queue's waiting tickets, kept across passes: each
    ticket's row is built once, when it is first seen, and a pass only gathers rows.

    A slot table with a free list. Region columns are shared by name and reused once no
    ticket names their region; `gather` returns them sorted by name, as `pool_of` does.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._slot: dict[bytes, int] = {}  # ticket id (as Redis returns it) -> row
        self._tickets: list[Ticket | None] = []
        self._free: list[int] = []
        self.mu = np.zeros(0)
        self.sigma2 = np.zeros(0)
        self.size = np.zeros(0, np.int64)
        self.created = np.zeros(0)
        self._held = np.zeros(0, bool)
        self._anywhere = np.zeros(0, bool)  # named no region: a row of zeros
        self._latency = np.zeros((0, 0))
        self._names = np.zeros((0, 0), bool)  # the ticket named this column's region
        self._column: dict[str, int] = {}
        self._region: list[str] = []  # region of each column, "" while unused
        self._users: list[int] = []  # tickets naming each column's region
        self._grow(max(capacity, 1))

    def __len__(self) -> int:
        return len(self._slot)

    def _grow(self, capacity: int) -> None:
        old = len(self._tickets)
        for name in ("mu", "sigma2", "size", "created", "_held", "_anywhere", "_latency", "_names"):
            a = getattr(self, name)
            bigger = np.zeros((capacity, *a.shape[1:]), a.dtype)
            bigger[:old] = a
            setattr(self, name, bigger)
        self._tickets.extend([None] * (capacity - old))
        self._free.extend(range(capacity - 1, old - 1, -1))  # lowest rows first

    def _column_of(self, region: str) -> int:
        col = self._column.get(region)
        if col is None:
            if "" in self._region:
                col = self._region.index("")
            else:
                col = len(self._region)
                self._region.append("")
                self._users.append(0)
                n = len(self._tickets)
                self._latency = np.hstack([self._latency, np.zeros((n, 1))])
                self._names = np.hstack([self._names, np.zeros((n, 1), bool)])
            self._region[col] = region
            self._column[region] = col
            # rows already held did not name it: out of reach, or anywhere for no regions
            self._latency[:, col] = np.where(self._anywhere, 0.0, np.inf)
            self._names[:, col] = False
        self._users[col] += 1
        return col

    def add(self, tickets: Iterable[Ticket]) -> None:
        """Hold rows for these tickets; one already held is left as it is (tickets never
        change once created)."""
        rows: list[int] = []
        mu: list[float] = []
        sigma2: list[float] = []
        size: list[int] = []
        created: list[float] = []
        anywhere: list[bool] = []
        at_row: list[int] = []
        at_col: list[int] = []
        at_ms: list[float] = []
        for t in tickets:
            key = t.id.encode()
            if key in self._slot:
                continue
            if not self._free:
                self._grow(2 * len(self._tickets))
            row = self._free.pop()
            self._slot[key] = row
            self._tickets[row] = t
            rows.append(row)
            size.append(len(t.players))
            mu.append(sum(t.mu))
            sigma2.append(sum(s * s for s in t.sigma))
            created.append(t.created)
            anywhere.append(not t.regions)
            for name, ms in t.regions.items():
                at_row.append(row)
                at_col.append(self._column_of(name))
                at_ms.append(ms)
        if not rows:
            return
        self.mu[rows] = mu
        self.sigma2[rows] = sigma2
        self.size[rows] = size
        self.created[rows] = created
        self._held[rows] = True
        self._anywhere[rows] = anywhere
        self._latency[rows] = np.where(np.array(anywhere)[:, None], 0.0, np.inf)
        self._names[rows] = False
        self._latency[at_row, at_col] = at_ms
        self._names[at_row, at_col] = True

    def remove(self, ticket_id: str) -> None:
        """Free the row of a ticket that no longer waits (nothing when none is held)."""
        row = self._slot.pop(ticket_id.encode(), None)
        if row is None:
            return
        t = self._tickets[row]
        assert t is not None
        self._tickets[row] = None
        self._held[row] = False
        self._free.append(row)
        for name in t.regions:
            col = self._column[name]
            self._users[col] -= 1
            if self._users[col] == 0:
                del self._column[name]
                self._region[col] = ""

    def keep(self, rows: Ints) -> None:
        """Free every row not in `rows`: the tickets that left the waiting set."""
        keep = np.zeros(len(self._tickets), bool)
        keep[rows] = True
        for row in np.flatnonzero(self._held & ~keep).tolist():
            self.remove(self.ticket(row).id)

    def held(self) -> Ints:
        """The row of every ticket held."""
        return np.flatnonzero(self._held)

    def rows(self, ids: Sequence[bytes]) -> Ints:
        """The row of each ticket id, -1 for one not held."""
        return np.fromiter(map(self._slot.get, ids, repeat(-1)), np.int64, len(ids))

    def ticket(self, row: int) -> Ticket:
        t = self._tickets[row]
        if t is None:
            raise KeyError(f"row {row} holds no ticket")
        return t

    def gather(self, rows: Ints, now: float) -> tuple[Pool, list[str]]:
        """The matcher's columns for the tickets in `rows`, in that order, and the region
        name of each latency column: what `pool_of` builds from the same tickets."""
        size = self.size[rows]
        mu = self.mu[rows]
        if len(rows) == len(self):  # every ticket held: the columns anybody names
            used = np.flatnonzero(np.array(self._users) > 0)
        else:
            used = np.flatnonzero(np.take(self._names, rows, axis=0).any(axis=0))
        names = sorted(self._region[c] for c in used.tolist())
        cols = np.array([self._column[n] for n in names], np.int64)
        latency = np.take(np.take(self._latency, rows, axis=0), cols, axis=1)  # [np.ix_]: 10x
        return Pool(mu / np.maximum(size, 1), mu, self.sigma2[rows], size,
                    np.maximum(now - self.created[rows], 0.0), latency), names


class QueueMatcher:
    """Runs the passes of one queue while this process holds the queue's lease."""

    def __init__(self, store: Store, queue: Queue, metrics: Metrics, *, owner: str,
                 secret: str | SigningKey | None, seat_ttl: float, lease_ttl: float,
                 seat_grace: float = 7.0) -> None:
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.owner = owner
        self.secret = secret
        self.seat_ttl = seat_ttl
        self.seat_grace = seat_grace
        self.lease_ttl = lease_ttl
        self._columns = PoolColumns()  # the waiting tickets read so far, as matcher rows
        self._seen: int | None = None  # the last change to waiting that the columns hold
        self._reread_at = 0.0  # monotonic time of the next read of the whole waiting set
        self._warned_no_relay = 0.0

    async def _sync(self) -> Ints:
        """Bring the columns up to the waiting set in Redis; returns the rows of every
        waiting ticket. Reads only the changes since the last pass, and the whole set after
        taking the lease, when changes were trimmed or the count of waiting tickets differs
        from the columns' (a ticket written without its change), and every
        `REREAD_SECONDS`."""
        q, cols = self.queue, self._columns
        while self._seen is not None and time.monotonic() < self._reread_at:
            got = await self.store.changes(q.name, self._seen, CHANGES_BATCH)
            if got is None:
                log.warning("%s: changes to waiting were trimmed before this matcher read "
                            "them; reading every waiting ticket", q.name)
                break
            self._seen = got.last
            gone = set(got.removed)
            for tid in gone:
                cols.remove(tid.decode())
            await self._read([t for t in got.added if t not in gone])
            if got.more:
                continue
            if len(cols) == got.waiting:
                return cols.held()
            log.warning("%s: %d tickets wait, the matcher holds %d: reading every waiting "
                        "ticket", q.name, got.waiting, len(cols))
            break
        # The whole set. Changes made while it is read come again next pass: adding a
        # ticket held or removing one not held changes nothing.
        self._seen = await self.store.last_change(q.name)
        self._reread_at = time.monotonic() + REREAD_SECONDS
        ids = await self.store.waiting(q.name)
        rows = cols.rows(ids)
        unknown = np.flatnonzero(rows < 0)
        new = [ids[i] for i in unknown.tolist()]
        await self._read(new)
        rows[unknown] = cols.rows(new)
        rows = rows[rows >= 0]
        if len(cols) > len(rows):
            cols.keep(rows)  # cancelled, or matched by another process meanwhile
        return rows

    async def _read(self, ids: Sequence[bytes]) -> None:
        """Hold rows for these tickets not held yet (tickets never change once created). In
        batches, so that reading 100,000 after taking the lease leaves the event loop to the
        API in between. A waiting ticket whose record is gone (expired while no matcher
        ran) fails with `timeout`, so that it does not hold a place in the queue."""
        cols = self._columns
        ids = [i for i, row in zip(ids, cols.rows(ids).tolist(), strict=True) if row < 0]
        lost: list[str] = []
        for at in range(0, len(ids), READ_BATCH):
            batch = [i.decode() for i in ids[at:at + READ_BATCH]]
            found = await self.store.tickets(self.queue.name, batch)
            cols.add(t for t in found if t is not None)
            lost += [tid for tid, t in zip(batch, found, strict=True) if t is None]
        if lost:
            log.warning("%s: %d waiting tickets have no record (expired): failing them",
                        self.queue.name, len(lost))
            n = await self.store.fail(self.queue.name, lost, "timeout")
            self.metrics.tickets.labels(self.queue.name, "timeout").inc(n)

    async def step(self) -> int:
        """One pass; returns the number of matches committed (0 without the lease)."""
        q = self.queue
        if not await self.store.lease(q.name, self.owner, self.lease_ttl):
            # Another process runs this queue: read everything again if this one takes over.
            self._columns = PoolColumns()
            self._seen = None
            return 0
        started = time.perf_counter()
        cols = self._columns
        rows = await self._sync()
        now = time.time()
        late = now - cols.created[rows] > q.max_wait
        committed = 0
        if late.any():
            if q.bots:
                committed = await self._with_bots(rows[late], now)
            else:
                await self._fail([cols.ticket(r) for r in rows[late].tolist()], "timeout")
            rows = rows[~late]
        self.metrics.waiting.labels(q.name).set(len(rows))
        if len(rows) > 0:
            pool, regions = cols.gather(rows, now)
            found = match(pool, q.rules())
            if len(found):
                # the tickets now, before seating frees their rows
                tickets = {int(i): cols.ticket(int(rows[i]))
                           for i in found.tickets[found.tickets >= 0].tolist()}
                committed += await self._seat(tickets, found, regions, now)
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
            self._columns.remove(t.id)
        await self.store.release_all([(t.id, t.players) for t in tickets])
        self.metrics.tickets.labels(self.queue.name, reason).inc(n)

    async def _with_bots(self, rows: Ints, now: float) -> int:
        """Match the oldest tickets past `max_wait` among themselves, bots in the seats left;
        fail those no region can take. Returns the number of matches committed."""
        cols = self._columns
        rows = rows[:BOTS_BATCH]  # about 25 ms of grouping; a backlog takes several passes
        pool, regions = cols.gather(rows, now)
        filled = fill(pool, self.queue.rules(), SIGMA)
        if len(filled.unplaced):
            await self._fail([cols.ticket(int(rows[i])) for i in filled.unplaced.tolist()],
                             "timeout")
        if not len(filled):
            return 0
        found = filled.matches
        tickets = {int(i): cols.ticket(int(rows[i]))
                   for i in found.tickets[found.tickets >= 0].tolist()}
        return await self._seat(tickets, found, regions, now, filled)

    async def _seat(self, tickets: dict[int, Ticket], found: Matches, regions: list[str],
                    now: float, filled: BotMatches | None = None) -> int:
        """Seat every match on a relay and commit them: one round trip for all the commits
        (each still its own atomic script) and one for releasing their players. With
        `filled`, the matches are those of `fill` and their records list the bots."""
        q = self.queue
        relays, dead = live_relays(await self.store.relays(), now)
        await self.store.forget_relays(dead)
        formed: list[tuple[int, list[tuple[Ticket, int]], dict[str, Any],
                           dict[str, dict[str, Any]]]] = []
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
            bots = [[] for _ in teams] if filled is None else _bots(
                teams, filled.bots[g].tolist(), float(filled.bot_mu[g]))
            record: dict[str, Any] = {
                "id": match_id, "queue": q.name, "room_type": q.room_type,
                "room_id": match_id, "relay": relay.url, "teams": teams,
                "tickets": [t.id for t, _ in members], "created": now,
                "region": region, "worst_latency_ms": float(found.worst_latency[g]),
                "rating_spread": float(found.spread[g]),
                "seat_expires": None if self.secret is None else now + self.seat_ttl,
                "win_probability": [float(p) for p in found.win[g]],
                "with_bots": any(bots), "bots": bots}
            by_ticket = {t.id: {p: seats[p] for p in t.players} for t, _ in members}
            formed.append((g, members, record, by_ticket))
        outcomes = await self.store.commit_matches(q.name, [(record, by_ticket) for _, _,
                                                            record, by_ticket in formed])
        committed = 0
        released: list[tuple[str, list[str]]] = []
        for (g, members, record, _), gone in zip(formed, outcomes, strict=True):
            if gone:  # cancelled meanwhile: nothing was written; the rest wait on
                for tid in gone:
                    self._columns.remove(tid)
                continue
            committed += 1
            for ticket, _ in members:
                self._columns.remove(ticket.id)
                released.append((ticket.id, ticket.players))
                self.metrics.wait.labels(q.name).observe(now - ticket.created)
            self.metrics.tickets.labels(q.name, "matched").inc(len(members))
            self.metrics.matches.labels(q.name).inc()
            self.metrics.spread.labels(q.name).observe(float(found.spread[g]))
            self.metrics.favourite.labels(q.name).observe(float(found.win[g].max()))
            if record["region"] is not None:
                self.metrics.latency.labels(q.name).observe(float(found.worst_latency[g]))
            bot_seats = sum(len(team) for team in record["bots"])
            if bot_seats:
                self.metrics.bot_matches.labels(q.name).inc()
                self.metrics.bot_seats.labels(q.name).inc(bot_seats)
            log.info("match %s: %s on %s (spread %.2f, win %s%s)", record["id"],
                     " vs ".join(",".join(t) for t in record["teams"]), record["relay"],
                     found.spread[g], "/".join(f"{p:.2f}" for p in found.win[g]),
                     f", {bot_seats} bots" if bot_seats else "")
        await self.store.release_all(released)
        return committed


def _bots(teams: list[list[str]], counts: list[int], mu: float) -> list[list[dict[str, Any]]]:
    """The bots of one match per team, named bot-1, bot-2, ... skipping the name of any
    human in the match, so a name in the room means one player."""
    humans = {p for team in teams for p in team}
    names = (f"bot-{i}" for i in count(1) if f"bot-{i}" not in humans)
    return [[{"name": next(names), "mu": mu, "sigma": SIGMA} for _ in range(n)]
            for n in counts]
