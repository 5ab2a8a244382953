"""`stadium new NAME`: a game project that runs and passes its own tests as generated: a
ticking `Room` with state, a `stadium.toml` that registers it, a test on `stadium.testing`,
and a Makefile whose `make run` and `make test` are all the set-up."""

from __future__ import annotations

import re
from pathlib import Path

import stadium

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def stadium_source() -> str:
    """What the project's Makefile installs Stadium from: this source checkout when Stadium
    runs from one (it is not on a package index yet), else the distribution by name."""
    root = Path(stadium.__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "sdk" / "python").is_dir():
        return str(root)
    return ""


def files(name: str, source: str) -> dict[str, str]:
    """Path -> text of every file of project `name`."""
    title = name.replace("_", " ").title()
    install = ("-e '$(STADIUM)[dev]' -e '$(STADIUM)/sdk/python'" if source
               else "'stadium[dev]' stadium-client")
    return {
        "README.md": f"""# {title}

```
make run     # creates .venv, installs, starts `stadium dev` with this game's room
make test    # creates .venv, installs, runs the tests
```

A game on Stadium: `{name}/rooms.py` holds the room, `{name}`, which
ticks 20 times a second and keeps every player's dot in `self.state`; clients steer with
`{{"dx": -1..1, "dy": -1..1}}` messages. `stadium.toml` registers it, so `make run` serves it
at `ws://127.0.0.1:8080/rooms/{name}/ROOM_ID`, beside the demo page and the matchmaker.

`tests/test_rooms.py` runs the room on a real relay in the test's process, with a
Python SDK client and ticks the test runs itself (`stadium.testing`).
""",
        "Makefile": f"""# make run / make test are all the set-up.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
STADIUM ?= {source}

.PHONY: install run test

install: $(STAMP)

$(STAMP): pyproject.toml
\ttest -x $(PY) || $(PYTHON) -m venv $(VENV)
\t$(PY) -m pip install --quiet {install} -e .
\ttouch $@

run: install
\t$(VENV)/bin/stadium dev

test: install
\t$(PY) -m pytest -q
""",
        "pyproject.toml": f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["stadium", "stadium-client"]

[tool.setuptools]
packages = ["{name}"]

[tool.ruff]
line-length = 100

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
""",
        "stadium.toml": f"""# `stadium dev` and `stadium relay` read this (flags and STADIUM_* win).
[relay]
rooms = ["{name}={name}.rooms:Game"]
""",
        ".gitignore": ".venv/\n__pycache__/\n*.egg-info/\n",
        f"{name}/__init__.py": f'"""{title}: a game on Stadium."""\n',
        f"{name}/rooms.py": f'''"""The {name} room: a dot per player, moved as the player steers."""

from __future__ import annotations

from typing import Any

import msgpack
from relay import ConnectContext, Connection, Fixed, Inputs, Int, Room, State

WORLD = 100.0  # metres; positions wrap at the edges
SPEED = 10.0  # metres per second at full steer


class Game(Room):
    tick_rate = 20

    def on_start(self) -> None:
        self.state = State({{"dots": {{"x": Fixed(0.01), "y": Fixed(0.01), "hue": Int("u1")}}}})
        self.steer: dict[int, tuple[float, float]] = {{}}

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        assert self.state is not None
        dot = self.state["dots"].spawn(x=WORLD / 2, y=WORLD / 2, hue=len(self.steer) * 40 % 256)
        conn.state = dot
        self.steer[dot] = (0.0, 0.0)
        conn.send({{"dot": dot}})

    def on_close(self, conn: Connection) -> None:
        assert self.state is not None
        self.state["dots"].despawn(conn.state)
        self.steer.pop(conn.state, None)

    def on_tick(self, dt: float, inputs: Inputs) -> None:
        assert self.state is not None
        for conn, message in inputs:
            given = _steer(message)
            if given is not None:
                self.steer[conn.state] = given
        dots = self.state["dots"]
        for dot, (dx, dy) in self.steer.items():
            dots["x"][dot] = (dots["x"][dot] + dx * SPEED * dt) % WORLD
            dots["y"][dot] = (dots["y"][dot] + dy * SPEED * dt) % WORLD


def _steer(message: str | bytes) -> tuple[float, float] | None:
    """(dx, dy), each clamped to -1..1, from a msgpack map; None for anything else."""
    try:
        data: Any = msgpack.unpackb(message) if isinstance(message, bytes) else None
    except Exception:
        return None
    if not isinstance(data, dict):
        return None
    dx, dy = data.get("dx", 0), data.get("dy", 0)
    if not isinstance(dx, int | float) or not isinstance(dy, int | float):
        return None
    return max(-1.0, min(1.0, float(dx))), max(-1.0, min(1.0, float(dy)))
''',
        "tests/test_rooms.py": f'''"""The {name} room on an in-process relay, ticked by the test."""

import msgpack
import pytest

from {name}.rooms import SPEED, Game


async def test_a_dot_moves_where_its_player_steers(stadium_relay):
    relay = await stadium_relay({{"{name}": Game}})
    ada = await relay.connect("{name}", "r", player="ada")
    dot = msgpack.unpackb(await ada.recv())["dot"]
    dots = relay.room("{name}", "r").state["dots"]
    x = float(dots["x"][dot])
    await relay.send(ada, {{"dx": 1}})
    await relay.tick("{name}", "r", 4)
    assert float(dots["x"][dot]) == pytest.approx(x + 4 * SPEED / Game.tick_rate, abs=0.01)
    mirror = await ada.wait_state(4)
    assert mirror["dots"].get(dot)["x"] == pytest.approx(float(dots["x"][dot]), abs=0.01)


async def test_bad_input_is_ignored(stadium_relay):
    relay = await stadium_relay({{"{name}": Game}})
    ada = await relay.connect("{name}", "r", player="ada")
    dot = msgpack.unpackb(await ada.recv())["dot"]
    x = float(relay.room("{name}", "r").state["dots"]["x"][dot])
    for bad in ("text", b"not msgpack", {{"dx": "far"}}, [1, 2]):
        await relay.send(ada, bad)
    await relay.tick("{name}", "r", 2)
    assert float(relay.room("{name}", "r").state["dots"]["x"][dot]) == pytest.approx(x)
''',
    }


def create(name: str, where: Path, source: str | None = None) -> Path:
    """Write project `name` into `where/name`; ValueError for a bad name or an existing
    folder."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a project name: use 1-40 of a-z 0-9 _, "
                         "starting with a letter (it is also the Python package's name)")
    root = where / name
    if root.exists():
        raise ValueError(f"{root} already exists")
    for rel, text in files(name, stadium_source() if source is None else source).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
