"""The code's layout rules that import-linter cannot check: the game API is light to
import, no module imports another's private names, and relay/ modules keep out of each
other's private attributes. `python -m tests.unit.test_layout` lists what it finds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("relay", "stadium", "matchmaker", "leaderboard", "loadtest", "tests",
               "stadium_client")
HEAVY = ("redis", "httpx", "prometheus_client", "fastapi", "starlette", "uvicorn", "aiohttp")
MAX_PRIVATE_USES = 10  # in relay/: fewer than this many


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py")
                  if "node_modules" not in p.parts)


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[:2] == ["sdk", "python"]:
        parts = parts[2:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def private_imports() -> list[str]:
    """`from X import _name` of a first-party module X other than the importer."""
    found = []
    for path in _sources(*FIRST_PARTY[:-1], "sdk/python/stadium_client"):
        tree = ast.parse(path.read_text(), str(path))
        here = _module(path)
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and node.module and not node.level
                    and node.module.split(".")[0] in FIRST_PARTY and node.module != here):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                     f"{alias.name} from {node.module}")
    return found


def private_attribute_uses() -> list[str]:
    """In relay/: `x._name` where x is not self/cls and no class of the same module
    defines `_name` (an attribute another module keeps private)."""
    found = []
    for path in _sources("relay"):
        tree = ast.parse(path.read_text(), str(path))
        own: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                own.add(node.name)
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in ("self", "cls")):
                own.add(node.attr)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                own.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                own.add(node.value)  # names listed in __slots__
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr not in own
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    return found


def test_importing_the_game_api_loads_no_network_client_or_server() -> None:
    code = ("import sys, relay; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})));"
            "print(' '.join(m for m in sys.modules if m.startswith('relay.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.splitlines()
    loaded, relay_modules = set(out[0].split()), out[1].split()
    assert "relay" in loaded and "numpy" in loaded  # what the API needs is there
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert not [m for m in relay_modules if m.startswith(("relay.server", "relay.transports",
                                                          "relay.metrics", "relay.games"))]


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports() == []


def test_relay_modules_keep_out_of_each_others_private_attributes() -> None:
    uses = private_attribute_uses()
    assert len(uses) < MAX_PRIVATE_USES, "\n".join(uses)


if __name__ == "__main__":
    imports, uses = private_imports(), private_attribute_uses()
    print(f"{len(imports)} private names imported from other modules")
    print("\n".join(imports))
    print(f"{len(uses)} uses of another module's private attributes in relay/")
    print("\n".join(uses))
