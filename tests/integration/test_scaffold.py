"""`stadium new NAME`: the project it writes passes its own `make test` as generated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _new(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stadium.cli", "new", *args], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_new_project_passes_its_own_make_test(tmp_path: Path) -> None:
    out = _new("mygame", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    project = tmp_path / "mygame"
    assert (project / "README.md").read_text().splitlines()[3:5] == [
        "make run     # creates .venv, installs, starts `stadium dev` with this game's room",
        "make test    # creates .venv, installs, runs the tests"]
    assert 'rooms = ["mygame=mygame.rooms:Game"]' in (project / "stadium.toml").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    run = subprocess.run(["make", "test"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=540)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 passed" in run.stdout


def test_bad_names_and_existing_folders_are_refused(tmp_path: Path) -> None:
    for bad in ("My-Game", "9lives", "a" * 41, "x/y"):
        out = _new(bad, cwd=tmp_path)
        assert out.returncode == 2 and "not a project name" in out.stderr, bad
    assert _new("taken", cwd=tmp_path).returncode == 0
    out = _new("taken", cwd=tmp_path)
    assert out.returncode == 2 and "already exists" in out.stderr
