"""Queue definitions, read from TOML: team shape, rating window and how it widens, limits."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from matchmaker.matcher import Rules
from matchmaker.ratings import BETA
from stadium.config import ConfigError

SHIPPED = Path(__file__).with_name("queues.toml")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PLAYERS = 64  # players in one match: the matcher looks at runs this long


@dataclass(frozen=True)
class Queue:
    """One queue. Free-for-all of N is `teams = N`, `team_size = 1`."""

    name: str
    teams: int = 2
    team_size: int = 1
    rating_window: float = 2.0
    widen_per_second: float = 0.25
    max_wait: float = 120.0
    max_region_latency_ms: float = 0.0
    room_type: str = "broadcast"
    regions: tuple[str, ...] = ()  # empty: any region name a ticket gives
    bots: bool = False  # past max_wait: a match with bots in the empty seats, not a failure

    @property
    def players(self) -> int:
        return self.teams * self.team_size

    def rules(self) -> Rules:
        return Rules(self.teams, self.team_size, self.rating_window, self.widen_per_second,
                     self.max_region_latency_ms, BETA)

    def check(self) -> None:
        where = f"queue {self.name!r}"
        if not NAME.fullmatch(self.name):
            raise ConfigError(f"{where}: names are 1-64 of A-Z a-z 0-9 _ -")
        if self.teams < 2 or self.team_size < 1:
            raise ConfigError(f"{where}: needs teams >= 2 and team_size >= 1")
        if self.players > MAX_PLAYERS:
            raise ConfigError(f"{where}: at most {MAX_PLAYERS} players per match")
        if self.rating_window < 0 or self.widen_per_second < 0 or self.max_wait <= 0 \
                or self.max_region_latency_ms < 0:
            raise ConfigError(f"{where}: windows and latency >= 0, max_wait > 0")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.room_type):
            raise ConfigError(f"{where}: room_type is 1-64 of A-Z a-z 0-9 _ -")


def parse(data: dict[str, Any], source: str) -> dict[str, Queue]:
    """Queues from the `[queues.NAME]` tables of a parsed TOML document."""
    tables = data.get("queues")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{source}: no [queues.NAME] tables")
    known = {f.name for f in fields(Queue)} - {"name"}
    out: dict[str, Queue] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: queues.{name} must be a table")
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"{source}: queues.{name}: unknown keys {', '.join(unknown)}")
        try:
            values = dict(table)
            if "regions" in values:
                values["regions"] = tuple(str(r) for r in values["regions"])
            if "bots" in values and not isinstance(values["bots"], bool):
                raise TypeError("bots must be true or false")
            for key in ("teams", "team_size"):
                if key in values and (isinstance(values[key], bool)
                                      or not isinstance(values[key], int)):
                    raise TypeError(f"{key} must be an integer")
            for key in ("rating_window", "widen_per_second", "max_wait",
                        "max_region_latency_ms"):
                if key in values:
                    if isinstance(values[key], bool) or not isinstance(values[key], int | float):
                        raise TypeError(f"{key} must be a number")
                    values[key] = float(values[key])
            queue = Queue(name=str(name), **values)
        except TypeError as e:
            raise ConfigError(f"{source}: queues.{name}: {e}") from None
        queue.check()
        out[queue.name] = queue
    return out


def load(path: str | Path | None) -> dict[str, Queue]:
    """The queues of a TOML file, or the shipped ones for None."""
    p = SHIPPED if path is None else Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"queues file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from None
    return parse(data, str(p))
