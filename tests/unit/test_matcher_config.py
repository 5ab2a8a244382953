"""The matchmaker's settings and queue files: documented, validated, errors named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from matchmaker import queues
from matchmaker.config import MatchmakerConfig
from stadium import config
from stadium.cli import parser

ROOT = Path(__file__).resolve().parents[2]


def test_flags_env_and_file(tmp_path: Path) -> None:
    path = tmp_path / "stadium.toml"
    path.write_text("[matchmaker]\nseat_ttl = 30\nmatch_interval = 0.5\n")
    args = parser().parse_args(["matchmaker", "--port", "9001"])
    cfg = config.load(MatchmakerConfig, args, section="matchmaker",
                      env={"STADIUM_MAX_WAITING": "10"}, toml_path=str(path))
    assert (cfg.port, cfg.seat_ttl, cfg.match_interval, cfg.max_waiting) == (9001, 30, 0.5, 10)
    with pytest.raises(config.ConfigError, match="lease_ttl must be longer"):
        MatchmakerConfig(match_interval=5.0, lease_ttl=3.0)
    with pytest.raises(config.ConfigError, match="seat_ttl must be positive"):
        MatchmakerConfig(seat_ttl=0)


def test_shipped_queues() -> None:
    shipped = queues.load(None)
    assert [(q.name, q.teams, q.team_size) for q in shipped.values()] == [
        ("1v1", 2, 1), ("2v2", 2, 2), ("5v5", 2, 5)]


@pytest.mark.parametrize("text,message", [
    ("", "no \\[queues.NAME\\] tables"),
    ("[queues.x]\nteams = 1\n", "teams >= 2"),
    ("[queues.x]\nteam_size = 'two'\n", "team_size must be an integer"),
    ("[queues.x]\nspeed = 3\n", "unknown keys speed"),
    ("[queues.x]\nmax_wait = 0\n", "max_wait > 0"),
    ("[queues.x]\nteams = 40\nteam_size = 2\n", "at most 64 players"),
    ("[queues.'bad name']\n", "names are 1-64"),
    ("[queues.x]\nroom_type = 'no/slash'\n", "room_type"),
    ("[queues.x\n", "Expected"),
])
def test_bad_queue_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        queues.load(path)


def test_cli_exits_2_on_a_bad_queue_file(tmp_path: Path) -> None:
    path = tmp_path / "queues.toml"
    path.write_text("[queues.x]\nteams = 1\n")
    out = subprocess.run([sys.executable, "-m", "stadium.cli", "matchmaker", "--port", "0",
                          "--queues", str(path), "--redis-url", "redis://127.0.0.1:1/0"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2 and "teams >= 2" in out.stderr
