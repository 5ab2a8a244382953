"""Settings precedence: flags, then STADIUM_* environment, then stadium.toml, then defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from leaderboard.config import LeaderboardConfig
from matchmaker.config import MatchmakerConfig
from relay.config import RelayConfig
from stadium import config
from stadium.cli import load_room_types, parser


def _args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["relay", *argv])


def test_defaults_when_nothing_is_given(tmp_path: Path) -> None:
    cfg = config.load(RelayConfig, _args(), section="relay", env={},
                      toml_path=str(_write(tmp_path, "")))
    assert cfg.port == 8080 and cfg.max_message_size == 65536 and cfg.secret is None


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "stadium.toml"
    p.write_text(text)
    return p


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    path = str(_write(tmp_path, 'port = 1111\n[relay]\nmsg_rate = 7.5\nidle_timeout = 9\n'
                                'allowed_origins = ["https://a", "https://b"]\n'))
    env = {"STADIUM_PORT": "2222", "STADIUM_IDLE_TIMEOUT": "30", "STADIUM_TRUST_PROXY": "yes"}
    cfg = config.load(RelayConfig, _args("--port", "3333"), section="relay", env=env,
                      toml_path=path)
    assert cfg.port == 3333            # flag
    assert cfg.idle_timeout == 30.0    # env over file
    assert cfg.msg_rate == 7.5         # file
    assert cfg.trust_proxy is True     # env bool
    assert cfg.allowed_origins == ["https://a", "https://b"]
    cfg = config.load(RelayConfig, _args(), section="relay", env=env, toml_path=path)
    assert cfg.port == 2222


def test_list_settings_from_env_and_repeated_flags(tmp_path: Path) -> None:
    env = {"STADIUM_ALLOWED_ORIGINS": "https://a, https://b"}
    cfg = config.load(RelayConfig, _args(), section="relay", env=env,
                      toml_path=str(_write(tmp_path, "")))
    assert cfg.allowed_origins == ["https://a", "https://b"]
    cfg = config.load(RelayConfig, _args("--room", "a=m:A", "--room", "b=m:B"), section="relay",
                      env={}, toml_path=str(_write(tmp_path, "")))
    assert cfg.rooms == ["a=m:A", "b=m:B"]


@pytest.mark.parametrize("env,message", [
    ({"STADIUM_PORT": "eighty"}, "STADIUM_PORT: cannot read 'eighty' as int"),
    ({"STADIUM_TRUST_PROXY": "perhaps"}, "STADIUM_TRUST_PROXY"),
    ({"STADIUM_MSG_RATE": "-1"}, "msg_rate must be positive"),
    ({"STADIUM_CERT": "c.pem"}, "--cert and --key go together"),
])
def test_bad_values_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(RelayConfig, _args(), section="relay", env=env,
                    toml_path=str(_write(tmp_path, "")))


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(RelayConfig, _args(), section="relay", env={},
                    toml_path=str(tmp_path / "none.toml"))
    with pytest.raises(config.ConfigError):
        config.load(RelayConfig, _args(), section="relay", env={},
                    toml_path=str(_write(tmp_path, "port = ")))


def test_room_specs() -> None:
    types = load_room_types(["e=tests.rooms:EchoRoom"])
    assert types["e"].__name__ == "EchoRoom"
    for bad in ("nonsense", "x=tests.rooms", "x=no.such.module:A", "x=tests.rooms:Nope",
                "x=argparse:ArgumentParser", "bad name=tests.rooms:EchoRoom"):
        with pytest.raises(config.ConfigError):
            load_room_types([bad])


@pytest.mark.parametrize("cls", [RelayConfig, LeaderboardConfig, MatchmakerConfig])
def test_every_setting_is_documented(cls: type) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for flag, env, _default, help_text in config.describe(cls):
        assert help_text, flag
        assert f"| `{flag}` | `{env}` |" in docs, flag
