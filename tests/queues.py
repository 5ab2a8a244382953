"""Queues the matchmaker tests start their matchmakers with, written as a --queues file
holds them (matchmaker/queues.toml)."""

from __future__ import annotations

import json
from pathlib import Path


def queue(name: str, team_size: int = 1, *, rating_window: float = 1000.0,
          max_wait: float = 60, **more: object) -> str:
    """A queue of two teams as TOML; `more` sets any other setting (a string, number or
    list)."""
    settings = {"teams": 2, "team_size": team_size, "rating_window": rating_window,
                "max_wait": max_wait, **more}
    return "\n".join([f"[queues.{name}]", *(f"{k} = {json.dumps(v)}"
                                             for k, v in settings.items())]) + "\n"


def queues_file(folder: Path, *queues: str) -> Path:
    """`folder`/queues.toml holding `queues`, for --queues."""
    path = folder / "queues.toml"
    path.write_text("\n".join(queues))
    return path
