"""Period ids (daily, weekly, monthly) for a moment, given the board's UTC reset time."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

KINDS = ("daily", "weekly", "monthly")
_PREFIX = {"daily": "d", "weekly": "w", "monthly": "m"}
# All used with fullmatch: `$` would also accept a trailing newline. ASCII digits only
# (`\d` takes any script's), as the OpenAPI document says.
_ID = re.compile(r"all|d:[0-9]{4}-[0-9]{2}-[0-9]{2}|w:[0-9]{4}-W[0-9]{2}|m:[0-9]{4}-[0-9]{2}")
# What a query's `period` may be: `all`, a kind, or a period id.
QUERY = re.compile(f"{'|'.join(KINDS)}|{_ID.pattern}")
RESET = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def reset_offset(reset_time: str) -> timedelta:
    m = RESET.fullmatch(reset_time)
    if m is None:
        raise ValueError(f"reset time {reset_time!r} is not HH:MM")
    return timedelta(hours=int(m.group(1)), minutes=int(m.group(2)))


def period_id(kind: str, at: float, reset_time: str = "00:00") -> str:
    """The id of the `kind` period that contains unix time `at`."""
    t = datetime.fromtimestamp(at, UTC) - reset_offset(reset_time)
    if kind == "daily":
        return f"d:{t:%Y-%m-%d}"
    if kind == "weekly":
        year, week, _ = t.isocalendar()
        return f"w:{year}-W{week:02d}"
    if kind == "monthly":
        return f"m:{t:%Y-%m}"
    raise ValueError(f"unknown period {kind!r}")


def period_end(pid: str, reset_time: str = "00:00") -> float:
    """Unix time at which period `pid` ends."""
    off = reset_offset(reset_time)
    kind, _, rest = pid.partition(":")
    if kind == "d":
        start = datetime.strptime(rest, "%Y-%m-%d").replace(tzinfo=UTC)
        end = start + timedelta(days=1)
    elif kind == "w":
        start = datetime.strptime(rest + "-1", "%G-W%V-%u").replace(tzinfo=UTC)
        end = start + timedelta(days=7)
    elif kind == "m":
        start = datetime.strptime(rest, "%Y-%m").replace(tzinfo=UTC)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + timedelta(days=days)
    else:
        raise ValueError(f"period {pid!r} has no end")
    return (end + off).timestamp()


_CURRENT: dict[tuple[str, str, int], tuple[str, float]] = {}


def current(kind: str, at: float, reset_time: str = "00:00") -> tuple[str, float]:
    """`(period_id, period_end)` of the `kind` period that contains `at`, remembered per
    minute: resets fall on whole minutes, so one UTC minute lies in one period."""
    key = (kind, reset_time, int(at // 60))
    found = _CURRENT.get(key)
    if found is None:
        if len(_CURRENT) > 4096:
            _CURRENT.clear()
        pid = period_id(kind, at, reset_time)
        found = _CURRENT[key] = (pid, period_end(pid, reset_time))
    return found


def valid_id(pid: str) -> bool:
    return bool(_ID.fullmatch(pid))


def resolve(period: str, kinds: list[str], at: float, reset_time: str) -> str:
    """A query's `period` (`all`, a kind the board keeps, or an explicit id) as a period id."""
    if period in ("", "all"):
        return "all"
    if period in KINDS:
        if period not in kinds:
            raise LookupError(f"this board does not keep {period} periods")
        return current(period, at, reset_time)[0]
    if valid_id(period) and _kind_of(period) in kinds:
        return period
    raise LookupError(f"unknown period {period!r}: use all, {', '.join(kinds) or '(none kept)'}, "
                      "or an id such as d:2026-11-23, w:2026-W47, m:2026-11")


def _kind_of(pid: str) -> str:
    return {"d": "daily", "w": "weekly", "m": "monthly"}.get(pid[:1], "")
