"""Configuration: flags, then `STADIUM_*` environment, then `stadium.toml`, then defaults.

Every service describes its settings as a dataclass whose fields carry a `help`
text in their metadata; this module turns such a dataclass into flags and fills it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")

DEFAULT_TOML = "stadium.toml"


class ConfigError(ValueError):
    """A setting has a value of the wrong kind; the message names the setting and its source."""


def setting(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A dataclass field with a help text (and an optional flag name other than the field's)."""
    meta = {"help": help, "flag": flag}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _kind(tp: Any) -> Any:
    """The scalar type of a field: `int | None` -> int, `list[str]` -> list."""
    origin = get_origin(tp)
    if origin is list:
        return list
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def flag_name(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def env_name(field: dataclasses.Field[Any]) -> str:
    return "STADIUM_" + field.name.upper()


def add_flags(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """One flag per field; its default is None so 'not given' can fall through to env and file."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _kind(hints[f.name])
        default = _default(f)
        text = f"{f.metadata.get('help', '')} (default: {default!r}; env {env_name(f)})"
        name = flag_name(f)
        if kind is bool:
            parser.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        elif kind is list:
            parser.add_argument(name, dest=f.name, action="append", default=None, help=text)
        else:
            parser.add_argument(name, dest=f.name, type=kind, default=None, help=text)


def _coerce(value: Any, kind: Any, where: str) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind is list:
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v.strip() for v in str(value).split(",") if v.strip()]
        if kind is float and isinstance(value, bool):
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: cannot read {value!r} as {kind.__name__}") from None


def read_toml(path: str | os.PathLike[str] | None, section: str) -> Mapping[str, Any]:
    """The `[section]` table of the file (top-level keys apply to every section)."""
    p = Path(path) if path is not None else Path(DEFAULT_TOML)
    if not p.exists():
        if path is not None:
            raise ConfigError(f"config file {p} does not exist")
        return {}
    with p.open("rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: {e}") from None
    merged = {k: v for k, v in data.items() if not isinstance(v, dict)}
    merged.update(data.get(section, {}))
    return merged


def load(cls: type[T], args: argparse.Namespace | None = None, *, section: str,
         env: Mapping[str, str] | None = None, toml_path: str | None = None) -> T:
    """Fill `cls` from flags, then environment, then the TOML file, then field defaults."""
    env = os.environ if env is None else env
    file_values = read_toml(toml_path, section)
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _kind(hints[f.name])
        given = getattr(args, f.name, None) if args is not None else None
        if given is not None:
            values[f.name] = _coerce(given, kind, flag_name(f))
        elif env_name(f) in env:
            values[f.name] = _coerce(env[env_name(f)], kind, env_name(f))
        elif f.name in file_values:
            values[f.name] = _coerce(file_values[f.name], kind, f"{section}.{f.name} in toml")
    return cls(**values)


def describe(cls: type[Any]) -> list[tuple[str, str, Any, str]]:
    """(flag, env, default, help) for every setting: the source of the docs' tables."""
    rows = []
    for f in dataclasses.fields(cls):
        default = _default(f)
        rows.append((flag_name(f), env_name(f), default, f.metadata.get("help", "")))
    return rows
