"""The matchmaking simulation: every arrival accounted for once, matches of the queue's shape
with parties whole, the service's pool columns, and the skill matcher tighter than FCFS."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.matchmaker_sim import (
    MATCHED,
    TIMED_OUT,
    WAITING,
    Arrivals,
    Outcome,
    first_come,
    pool_at,
    run,
    summarize,
)
from matchmaker.matcher import Pool, Rules
from matchmaker.passes import pool_of
from matchmaker.queues import Queue, load
from matchmaker.ratings import Rating, predict_win
from matchmaker.store import Ticket

SECONDS, RATE, INTERVAL = 60.0, 50.0, 0.25
REGIONS = ["eu", "us-east", "asia"]
QUEUES = load(None)


@pytest.fixture(scope="module", params=["1v1", "2v2", "5v5"])
def sim(request: pytest.FixtureRequest) -> tuple[Queue, Arrivals, dict[str, Outcome]]:
    queue = QUEUES[request.param]
    arr, outcomes = run(queue, rate=RATE, seconds=SECONDS, interval=INTERVAL,
                        party_share=0.3, regions=REGIONS, seed=7)
    return queue, arr, outcomes


def players_of(arr: Arrivals, ticket: int) -> list[int]:
    return list(range(int(arr.first[ticket]), int(arr.first[ticket] + arr.size[ticket])))


def test_every_arrival_is_accounted_for_once(
        sim: tuple[Queue, Arrivals, dict[str, Outcome]]) -> None:
    queue, arr, outcomes = sim
    assert abs(len(arr) - RATE * SECONDS) < 5 * np.sqrt(RATE * SECONDS)  # Poisson count
    for out in outcomes.values():
        in_matches = np.bincount(out.tickets[out.tickets >= 0], minlength=len(arr))
        matched = out.status == MATCHED
        assert (in_matches[matched] == 1).all()
        assert (in_matches[~matched] == 0).all()
        counts = [int((out.status == s).sum()) for s in (MATCHED, TIMED_OUT, WAITING)]
        assert sum(counts) == len(arr)
        assert counts[0] > 0.9 * len(arr)
        waited = out.done - arr.time
        assert (waited[matched] >= 0).all() and (waited[matched] <= queue.max_wait).all()
        assert np.isnan(out.done[out.status == WAITING]).all()


def test_no_player_is_in_two_matches(sim: tuple[Queue, Arrivals, dict[str, Outcome]]) -> None:
    _, arr, outcomes = sim
    for out in outcomes.values():
        players = [p for t in out.tickets[out.tickets >= 0].tolist() for p in players_of(arr, t)]
        assert len(players) == len(set(players)) == int(arr.size[out.status == MATCHED].sum())


def test_matches_have_the_queue_shape_and_parties_stay_whole(
        sim: tuple[Queue, Arrivals, dict[str, Outcome]]) -> None:
    queue, arr, outcomes = sim
    for out in outcomes.values():
        seat_of: dict[int, tuple[int, int]] = {}  # player -> (match, team)
        for g in range(len(out.tickets)):
            row = out.tickets[g] >= 0
            tickets, teams = out.tickets[g][row], out.team[g][row]
            per_team = np.bincount(teams, weights=arr.size[tickets], minlength=queue.teams)
            assert per_team.tolist() == [queue.team_size] * queue.teams
            for t, team in zip(tickets.tolist(), teams.tolist(), strict=True):
                for p in players_of(arr, t):
                    seat_of[p] = (g, team)
        parties = np.flatnonzero((arr.size > 1) & (out.status == MATCHED))
        assert (len(parties) > 0) == (queue.team_size > 1)
        for t in parties.tolist():
            assert len({seat_of[p] for p in players_of(arr, t)}) == 1


def test_skill_matcher_spread_is_smaller_than_first_come(
        sim: tuple[Queue, Arrivals, dict[str, Outcome]]) -> None:
    queue, arr, outcomes = sim
    skill, fcfs = (summarize(arr, out, queue.teams) for out in outcomes.values())

    def figure(report: dict[str, float | int | None], key: str) -> float:
        value = report[key]
        assert value is not None, key
        return float(value)

    assert figure(skill, "spread_p50") < figure(fcfs, "spread_p50")
    assert figure(skill, "balance_p50") < figure(fcfs, "balance_p50")
    # The window bounds a ticket's rating (its players' mean): never wider than it allows.
    widest = queue.rating_window + queue.widen_per_second * figure(skill, "wait_max_s")
    assert figure(skill, "ticket_spread_p90") <= widest


def test_win_probability_is_openskills(sim: tuple[Queue, Arrivals, dict[str, Outcome]]) -> None:
    queue, arr, outcomes = sim
    for out in outcomes.values():
        for g in range(0, len(out.tickets), max(1, len(out.tickets) // 20)):
            teams: list[list[Rating]] = [[] for _ in range(queue.teams)]
            for t, team in zip(out.tickets[g].tolist(), out.team[g].tolist(), strict=True):
                if t >= 0:
                    teams[team] += [Rating(float(arr.mu[p]), float(arr.sigma[p]))
                                    for p in players_of(arr, t)]
            assert out.win[g].tolist() == pytest.approx(predict_win(teams), abs=1e-6)


def test_pool_is_what_the_service_builds() -> None:
    queue = QUEUES["5v5"]
    arr, _ = run(queue, rate=20, seconds=5, interval=INTERVAL, party_share=0.5,
                 regions=REGIONS, seed=3)
    waiting = np.arange(len(arr), dtype=np.int64)
    now = 5.0
    tickets = [Ticket(f"t{i}", queue.name, [f"p{p}" for p in players_of(arr, i)],
                      [float(arr.mu[p]) for p in players_of(arr, i)],
                      [float(arr.sigma[p]) for p in players_of(arr, i)],
                      dict(zip(REGIONS, arr.latency[i].tolist(), strict=True)),
                      float(arr.time[i])) for i in waiting.tolist()]
    service, names = pool_of(tickets, now)
    mine = pool_at(arr, waiting, now)
    for column in ("rating", "mu", "sigma2", "size", "wait"):
        assert getattr(mine, column) == pytest.approx(getattr(service, column)), column
    assert mine.latency[:, [REGIONS.index(n) for n in names]] == pytest.approx(service.latency)


def test_timeouts_are_counted_when_nobody_fits() -> None:
    queue = Queue("slow", teams=2, team_size=5, rating_window=0.5, widen_per_second=0.0,
                  max_wait=5.0, max_region_latency_ms=150.0)
    arr, outcomes = run(queue, rate=2, seconds=40, interval=INTERVAL, party_share=0.0,
                        regions=REGIONS, seed=5)
    out = outcomes["skill (matchmaker)"]
    timed = out.status == TIMED_OUT
    assert timed.sum() > 0.5 * len(arr)
    waited = out.done[timed] - arr.time[timed]
    assert (waited > queue.max_wait).all() and (waited <= queue.max_wait + INTERVAL).all()
    # Still waiting at the end means arrived within the last max_wait.
    assert (arr.time[out.status == WAITING] >= 40 - queue.max_wait - INTERVAL).all()


def pool(rating: list[float], size: list[int], wait: list[float],
         latency: list[list[float]]) -> Pool:
    r = np.array(rating)
    s = np.array(size, dtype=np.int64)
    return Pool(r, r * s, np.full(len(r), 4.0) * s, s, np.array(wait), np.array(latency))


def test_first_come_takes_the_oldest_whatever_their_rating() -> None:
    p = pool([10, 40, 25, 11], [1, 1, 1, 1], [3.0, 2.0, 1.0, 0.0], [[20.0]] * 4)
    m = first_come(p, Rules(2, 1, 2.0, 0.25, 150.0))
    assert m.tickets.tolist() == [[0, 1], [2, 3]]
    assert m.team.tolist() == [[0, 1], [0, 1]]
    assert m.spread.tolist() == [30.0, 14.0]


def test_first_come_keeps_parties_whole_and_regions_within_the_limit() -> None:
    far = [300.0, 20.0]  # only reachable in the second region
    near = [20.0, 200.0]
    p = pool([25] * 6, [3, 3, 2, 2, 3, 2], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
             [near, near, far, near, near, near])
    m = first_come(p, Rules(2, 5, 3.0, 0.25, 150.0))
    # Ticket 2 cannot play in region 0 with the others; 4 (a party of 3) finds no team
    # with room once 0..3 are placed, so 5 completes the match and 2 and 4 wait.
    assert m.tickets.tolist() == [[0, 1, 3, 5, -1, -1, -1, -1, -1, -1]]
    assert m.team[0, :4].tolist() == [0, 1, 0, 1]
    assert m.region.tolist() == [0] and m.worst_latency.tolist() == [20.0]
