"""The client's mirror of a room's state: applies the relay's snapshots and diffs.

Format: docs/protocol.md, "State". Entity tables are numpy columns of quantised wire
values; `table.values("x")` gives them in game units, `lerp` interpolates between ticks.
"""

from __future__ import annotations

import copy
import math
import struct
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

STATE_EXT = 0x53
KIND_SNAPSHOT = 1
KIND_DIFF = 2
KIND_VIEW = 3
_BUNDLE = struct.Struct("<BBIIII")  # kind, table, cell, three counts
_DROP, _FULL, _DELTA_BUNDLE = 0, 1, 2
WIRE_DTYPES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")
_DELTA = 16
_EXT_HEADS = {0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1, 0xC7: 2, 0xC8: 3, 0xC9: 5}


class StateError(Exception):
    """A state message that cannot be applied (malformed, or its baseline is unknown)."""


def state_payload(message: bytes | str) -> bytes | None:
    """The body of a state message, or None when `message` is an ordinary room message."""
    if not isinstance(message, bytes) or len(message) < 3:
        return None
    at = _EXT_HEADS.get(message[0])
    if at is None or message[at] != STATE_EXT:
        return None
    ext = msgpack.unpackb(message)
    return ext.data if isinstance(ext, msgpack.ExtType) else None


def _dtype(code: int) -> np.dtype[Any]:
    return np.dtype("<" + WIRE_DTYPES[code & 15])


def decode_ids(enc: list[Any] | None) -> npt.NDArray[np.int64]:
    if enc is None:
        return np.zeros(0, np.int64)
    first, width, data = enc
    if width == 0:
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return np.flatnonzero(bits).astype(np.int64) + int(first)
    gaps = np.frombuffer(data, np.dtype(f"<u{width}")).astype(np.int64)
    ids = np.empty(len(gaps) + 1, np.int64)
    ids[0] = first
    np.cumsum(gaps, out=ids[1:])
    ids[1:] += first
    return ids


class MirrorTable:
    """One entity table: `ids` of live entities, `column(f)` wire values, `values(f)` in
    game units (metres, radians)."""

    def __init__(self, name: str, schema: list[list[Any]]) -> None:
        self.name = name
        self.schema = {f[0]: f[1:] for f in schema}
        self.names = [f[0] for f in schema]
        self.alive = np.zeros(0, np.bool_)
        self.columns: dict[str, npt.NDArray[Any]] = {n: np.zeros(0, _wire_dtype(k))
                                                     for n, k in self.schema.items()}

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.alive)

    def __len__(self) -> int:
        return int(self.alive.sum())

    def __contains__(self, entity: int) -> bool:
        return 0 <= entity < len(self.alive) and bool(self.alive[entity])

    def column(self, field: str) -> npt.NDArray[Any]:
        return self.columns[field]

    def values(self, field: str) -> npt.NDArray[Any]:
        """The whole column in game units: Fixed fields times their precision, angles in
        radians, everything else as sent."""
        kind = self.schema[field]
        col = self.columns[field]
        if kind[0] == "fixed":
            return col * float(kind[1])
        if kind[0] == "angle":
            return col * (2 * math.pi / float(kind[1]))
        return col

    def get(self, entity: int) -> dict[str, Any]:
        if entity not in self:
            raise KeyError(f"table {self.name!r} has no entity {entity}")
        return {n: self.values(n)[entity].item() for n in self.names}

    def _reserve(self, n: int) -> None:
        if n <= len(self.alive):
            return
        size = max(n, 2 * len(self.alive), 16)
        grow = size - len(self.alive)
        self.alive = np.concatenate([self.alive, np.zeros(grow, np.bool_)])
        for f, col in self.columns.items():
            self.columns[f] = np.concatenate([col, np.zeros(grow, col.dtype)])

    def _copy(self) -> MirrorTable:
        twin = copy.copy(self)
        twin.alive = self.alive.copy()
        twin.columns = {f: c.copy() for f, c in self.columns.items()}
        return twin


def _wire_dtype(kind: list[Any]) -> np.dtype[Any]:
    name = kind[0]
    if name == "fixed":
        return np.dtype("<" + str(kind[2]))
    if name == "angle":
        return np.dtype("<u1" if kind[1] == 256 else "<u2")
    if name == "flags":
        return np.dtype(f"<u{int(kind[1]) // 8}")
    return np.dtype("<" + str(kind[1]))


def _decode_values(enc: list[Any]) -> tuple[bool, npt.NDArray[Any]]:
    code, data = enc
    return code >= _DELTA, np.frombuffer(data, _dtype(code))


class StateMirror:
    """Applies state messages in order. With `history` > 1 it keeps that many past ticks,
    so a diff against any of them (an acknowledged baseline) can be applied."""

    def __init__(self, history: int = 1) -> None:
        self.tick = 0
        self.tables: dict[str, MirrorTable] = {}
        self.doc: dict[str, Any] = {}
        self.previous: StateMirror | None = None
        self._history = max(1, history)
        self._past: dict[int, StateMirror] = {}

    def __getitem__(self, name: str) -> MirrorTable:
        return self.tables[name]

    def apply(self, payload: bytes) -> bool:
        """Apply one state message body; False when it is older than what is applied (a
        reordered or repeated message), True when the mirror moved to its tick."""
        try:
            unpacker = msgpack.Unpacker(strict_map_key=False)
            unpacker.feed(payload)
            body = unpacker.unpack()
            rest = payload[unpacker.tell():]
            kind, tick = body[0], body[1]
        except Exception as e:
            raise StateError(f"malformed state message: {e}") from None
        if tick <= self.tick:
            return False
        before = self._freeze()
        if kind == KIND_SNAPSHOT:
            self._load_snapshot(body)
        elif kind == KIND_DIFF:
            base = body[2]
            if base == self.tick:
                pass
            elif base in self._past:
                self._restore(self._past[base])
            else:
                raise StateError(f"diff against tick {base}, which this mirror does not have")
            self._apply_diff(body)
        elif kind == KIND_VIEW:
            self._apply_view(body, rest)
        else:
            raise StateError(f"unknown state message kind {kind!r}")
        self.tick = tick
        self.previous = before
        if self._history > 1:
            self._past[tick] = self._freeze()
            for old in [t for t in self._past if t <= tick - self._history]:
                del self._past[old]
        return True

    def lerp(self, table: str, field: str, alpha: float) -> npt.NDArray[Any]:
        """Values of `field` between the previous tick (alpha 0) and this one (alpha 1);
        entities that did not exist at the previous tick get their current value. Angles
        take the short way round."""
        cur = self.tables[table]
        now = cur.values(field).astype(np.float64)  # unsigned columns must not wrap below 0
        prev_state = self.previous
        if prev_state is None or table not in prev_state.tables:
            return now
        prev_table = prev_state.tables[table]
        n = len(now)
        before = np.zeros(n, now.dtype) if len(prev_table.alive) < n else None
        old = prev_table.values(field)[:n]
        if before is not None:
            before[:len(old)] = old
            old = before
        both = cur.alive[:n].copy()
        both[:len(prev_table.alive)] &= prev_table.alive[:n]
        both[len(prev_table.alive):] = False
        delta = now - old
        if cur.schema[field][0] == "angle":
            delta = (delta + math.pi) % (2 * math.pi) - math.pi
        return np.where(both, old + delta * alpha, now)

    # --- internals ------------------------------------------------------------------------
    def _freeze(self) -> StateMirror:
        twin = StateMirror.__new__(StateMirror)
        twin.tick = self.tick
        twin.tables = {n: t._copy() for n, t in self.tables.items()}
        twin.doc = copy.deepcopy(self.doc)
        twin.previous = None
        twin._history = 1
        twin._past = {}
        return twin

    def _restore(self, other: StateMirror) -> None:
        self.tables = {n: t._copy() for n, t in other.tables.items()}
        self.doc = copy.deepcopy(other.doc)

    def _load_snapshot(self, body: list[Any]) -> None:
        _, _, schema, tables, doc = body
        self.tables = {name: MirrorTable(name, fields) for name, fields in schema.items()}
        for name, (ids_enc, cols) in tables.items():
            t = self.tables[name]
            ids = decode_ids(ids_enc)
            if len(ids):
                t._reserve(int(ids[-1]) + 1)
                t.alive[ids] = True
                for f, enc in zip(t.names, cols, strict=True):
                    t.columns[f][ids] = _decode_values(enc)[1]
        self.doc = doc

    def _apply_view(self, body: list[Any], rest: bytes) -> None:
        _, _, base, inner, layouts = body
        if base == 0:
            self._load_snapshot(inner)
        elif base == self.tick:
            self._apply_diff(inner)
        else:
            raise StateError(f"view diff against tick {base}, but the mirror is at {self.tick}")
        _read_view(self, [_Layout(self, spec) for spec in layouts], rest)

    def _apply_diff(self, body: list[Any]) -> None:
        _, _, _, tables, ops = body
        for name, (gone_enc, born_enc, spawn_cols, changed_enc, fields) in tables.items():
            t = self.tables[name]
            gone = decode_ids(gone_enc)
            t.alive[gone] = False
            born = decode_ids(born_enc)
            if len(born):
                t._reserve(int(born[-1]) + 1)
                t.alive[born] = True
                for f, enc in zip(t.names, spawn_cols, strict=True):
                    t.columns[f][born] = _decode_values(enc)[1]
            changed = decode_ids(changed_enc)
            for f, entry in zip(t.names, fields, strict=False):
                if entry is None:
                    continue
                sub, code, data = entry
                rows = changed
                if sub is not None:
                    bits = np.unpackbits(np.frombuffer(sub, np.uint8), bitorder="little")
                    rows = changed[bits[:len(changed)].astype(np.bool_)]
                is_delta, vals = _decode_values([code, data])
                col = t.columns[f]
                if is_delta:
                    col[rows] = (col[rows].astype(np.int64) + vals).astype(col.dtype)
                else:
                    col[rows] = vals
        for op in ops:
            _apply_op(self.doc, op)


class _Layout:
    """Record types of one grid table in a view message."""

    def __init__(self, mirror: StateMirror, spec: list[Any]) -> None:
        name, id_code, codes, delta_codes = spec
        self.table = mirror.tables[name]
        self.ids = _dtype(id_code)
        self.full = np.dtype([("id", self.ids)] + [
            (f, _dtype(c)) for f, c in zip(self.table.names, codes, strict=True)])
        self.delta_codes = delta_codes
        self.delta = np.dtype([("id", self.ids)] + [
            (f, _dtype(c)) for f, c in zip(self.table.names, delta_codes, strict=False)])


def _read_view(mirror: StateMirror, layouts: list[_Layout], rest: bytes) -> None:
    """Apply the cell bundles of a view message: removals first, then arrivals, then
    changes, so an entity that moved between two visible cells ends up present."""
    removals, arrivals, changes = [], [], []
    pos = 0
    while pos < len(rest):
        kind, ti, _cell, n0, n1, n2 = _BUNDLE.unpack_from(rest, pos)
        pos += _BUNDLE.size
        lay = layouts[ti]
        if kind in (_DROP, _DELTA_BUNDLE):
            removals.append((lay, np.frombuffer(rest, lay.ids, n0, pos)))
            pos += n0 * lay.ids.itemsize
        if kind == _FULL:
            arrivals.append((lay, np.frombuffer(rest, lay.full, n0, pos)))
            pos += n0 * lay.full.itemsize
        if kind == _DELTA_BUNDLE:
            arrivals.append((lay, np.frombuffer(rest, lay.full, n1, pos)))
            pos += n1 * lay.full.itemsize
            changes.append((lay, np.frombuffer(rest, lay.delta, n2, pos)))
            pos += n2 * lay.delta.itemsize
        if kind not in (_DROP, _FULL, _DELTA_BUNDLE):
            raise StateError(f"unknown view bundle kind {kind}")
    for lay, ids in removals:
        lay.table.alive[ids.astype(np.int64)] = False
    for lay, recs in arrivals:
        if not len(recs):
            continue
        ids = recs["id"].astype(np.int64)
        t = lay.table
        t._reserve(int(ids.max()) + 1)
        t.alive[ids] = True
        for f in t.names:
            t.columns[f][ids] = recs[f]
    for lay, recs in changes:
        if not len(recs):
            continue
        ids = recs["id"].astype(np.int64)
        t = lay.table
        for f, code in zip(t.names, lay.delta_codes, strict=True):
            col = t.columns[f]
            if code >= _DELTA:
                col[ids] = (col[ids].astype(np.int64) + recs[f]).astype(col.dtype)
            else:
                col[ids] = recs[f]


def _apply_op(doc: dict[str, Any], op: list[Any]) -> None:
    path = op[0]
    node = doc
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    if len(op) == 1:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = op[1]
