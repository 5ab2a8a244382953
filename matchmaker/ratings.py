"""Player skill as OpenSkill (Plackett-Luce) ratings: defaults, predictions, updates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openskill.models import PlackettLuce

MODEL = PlackettLuce()
MU: float = MODEL.mu
SIGMA: float = MODEL.sigma
BETA: float = MODEL.beta


@dataclass(frozen=True)
class Rating:
    mu: float = MU
    sigma: float = SIGMA
    games: int = 0

    @property
    def ordinal(self) -> float:
        """A conservative skill estimate (mu - 3 sigma), what leaderboards usually show."""
        return self.mu - 3 * self.sigma

    def encode(self) -> str:
        return f"{self.mu!r} {self.sigma!r} {self.games}"

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Rating:
        if raw is None:
            return cls()
        text = raw.decode() if isinstance(raw, bytes) else raw
        mu, sigma, games = text.split()
        return cls(float(mu), float(sigma), int(games))


def rate(teams: Sequence[Sequence[Rating]], ranks: Sequence[int]) -> list[list[Rating]]:
    """New ratings after a match: rank 1 is the winner; equal ranks are a draw."""
    model_teams = [[MODEL.rating(mu=r.mu, sigma=r.sigma) for r in team] for team in teams]
    rated = MODEL.rate(model_teams, ranks=[float(r) for r in ranks])
    return [[Rating(new.mu, new.sigma, old.games + 1) for new, old in zip(nt, ot, strict=True)]
            for nt, ot in zip(rated, teams, strict=True)]


def predict_win(teams: Sequence[Sequence[Rating]]) -> list[float]:
    """Each team's chance to win, by the rating model (the matcher computes the same in bulk)."""
    return list(MODEL.predict_win([[MODEL.rating(mu=r.mu, sigma=r.sigma) for r in team]
                                   for team in teams]))
