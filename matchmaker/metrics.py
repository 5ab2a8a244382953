"""Prometheus metrics of the matchmaker: requests, tickets, and the quality of its matches."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("stadium_matchmaker_requests", "HTTP requests",
                                ["route", "status"], registry=r)
        self.tickets = Counter("stadium_matchmaker_tickets", "Tickets by what became of them",
                               ["queue", "outcome"], registry=r)
        self.matches = Counter("stadium_matchmaker_matches", "Matches formed", ["queue"],
                               registry=r)
        self.waiting = Gauge("stadium_matchmaker_waiting_tickets",
                             "Waiting tickets at the last pass", ["queue"], registry=r)
        self.wait = Histogram("stadium_matchmaker_match_wait_seconds",
                              "How long each matched ticket waited", ["queue"], registry=r,
                              buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300))
        self.spread = Histogram("stadium_matchmaker_match_rating_spread",
                                "Highest minus lowest ticket rating (mu) in a match", ["queue"],
                                registry=r, buckets=(0.5, 1, 2, 3, 5, 8, 12, 20))
        self.favourite = Histogram("stadium_matchmaker_match_favourite_win_probability",
                                   "Predicted win probability of the strongest team (0.5 is "
                                   "a perfectly even match)", ["queue"], registry=r,
                                   buckets=(0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0))
        self.latency = Histogram("stadium_matchmaker_match_worst_latency_ms",
                                 "Highest player latency to the chosen region", ["queue"],
                                 registry=r, buckets=(20, 40, 60, 80, 100, 150, 200, 300))
        self.pass_seconds = Histogram("stadium_matchmaker_pass_seconds",
                                      "Time of one matching pass, Redis included", ["queue"],
                                      registry=r,
                                      buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1))
        self.seats_released = Counter(
            "stadium_matchmaker_seats_released",
            "Seats not taken by their expiry plus --seat-grace (the player never joined)",
            ["queue"], registry=r)
        self.matches_incomplete = Counter(
            "stadium_matchmaker_matches_incomplete",
            "Matches with at least one seat not taken by its expiry", ["queue"], registry=r)
        self.bot_matches = Counter("stadium_matchmaker_bot_matches",
                                   "Matches formed for tickets past max_wait, with bots",
                                   ["queue"], registry=r)
        self.bot_seats = Counter("stadium_matchmaker_bot_seats", "Seats filled by a bot",
                                 ["queue"], registry=r)
        self.no_relay = Counter("stadium_matchmaker_no_relay",
                                "Matches left waiting because no relay was registered",
                                ["queue"], registry=r)
