"""A room's replicated state: entity tables in numpy columns plus a small document.

Each tick the state is committed into a ring of quantised snapshots; a diff between
any two of them is found by column comparison and encoded once (format in docs/protocol.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from relay.interest import Grid

__all__ = ["Angle", "Field", "Fixed", "Flags", "Float", "Int", "State", "Table", "STATE_EXT",
           "RING_SIZE"]

STATE_EXT = 0x53
"""msgpack ext type that marks a state message (snapshot or diff) on the wire."""
RING_SIZE = 32
"""Snapshots kept for acknowledged baselines; a client further behind gets a snapshot."""

KIND_SNAPSHOT = 1
KIND_DIFF = 2

# Wire dtype codes: the index in this tuple. Always little-endian on the wire.
WIRE_DTYPES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")
_CODE = {np.dtype("<" + d): i for i, d in enumerate(WIRE_DTYPES)}
_DELTA = 16  # added to the dtype code when a column holds deltas against the baseline
_SIGNED = tuple(np.dtype("<" + d) for d in ("i1", "i2", "i4", "i8"))
_UNSIGNED = tuple(np.dtype("<" + d) for d in ("u1", "u2", "u4", "u8"))
_GAPS = tuple((np.iinfo(d).max, d) for d in _UNSIGNED[:3])

IntArray = npt.NDArray[np.integer[Any]]
BoolArray = npt.NDArray[np.bool_]


class Field:
    """How one column is stored for game code and quantised for the wire."""

    wire: np.dtype[Any]
    local: np.dtype[Any]

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column.astype(self.wire)

    def describe(self) -> list[Any]:
        raise NotImplementedError


class Fixed(Field):
    """A real number (metres, seconds) stored as float64 and sent as an integer count of
    `precision` steps; values outside the wire type's range are clamped."""

    def __init__(self, precision: float, wire: str = "i4") -> None:
        if not (precision > 0 and math.isfinite(precision)):
            raise ValueError("precision must be a positive finite number")
        self.precision = float(precision)
        self.wire = np.dtype("<" + wire)
        if self.wire not in _SIGNED:
            raise ValueError("Fixed wire type must be one of i1, i2, i4, i8")
        self.local = np.dtype(np.float64)
        info = np.iinfo(self.wire)
        self._scale = 1.0 / self.precision
        self._lo, self._hi = float(info.min), float(info.max)

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        q = np.rint(column * self._scale)
        np.clip(q, self._lo, self._hi, out=q)
        return q.astype(self.wire)

    def describe(self) -> list[Any]:
        return ["fixed", self.precision, self.wire.str[1:]]


class Angle(Field):
    """An angle in radians sent as one of `steps` equal steps of a turn (256 fits a byte)."""

    def __init__(self, steps: int = 256) -> None:
        if steps not in (256, 65536):
            raise ValueError("Angle steps must be 256 or 65536")
        self.steps = steps
        self.wire = np.dtype("<u1" if steps == 256 else "<u2")
        self.local = np.dtype(np.float64)
        self._scale = steps / (2 * math.pi)

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        q = np.rint(column * self._scale).astype(np.int64)
        q %= self.steps
        return q.astype(self.wire)

    def describe(self) -> list[Any]:
        return ["angle", self.steps]


class Int(Field):
    """An integer column sent as it is (`u1`, `i2`, `u4`, ...)."""

    def __init__(self, dtype: str = "i4") -> None:
        self.wire = self.local = np.dtype("<" + dtype)
        if self.wire not in _SIGNED and self.wire not in _UNSIGNED:
            raise ValueError(f"Int dtype must be one of {', '.join(WIRE_DTYPES[:8])}")

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column  # already the wire type; the ring copies it

    def describe(self) -> list[Any]:
        return ["int", self.wire.str[1:]]


class Flags(Int):
    """Up to 8, 16 or 32 boolean flags packed in one unsigned integer."""

    def __init__(self, bits: int = 8) -> None:
        if bits not in (8, 16, 32):
            raise ValueError("Flags bits must be 8, 16 or 32")
        super().__init__({8: "u1", 16: "u2", 32: "u4"}[bits])

    def describe(self) -> list[Any]:
        return ["flags", self.wire.itemsize * 8]


class Float(Field):
    """A float sent unquantised (`f4` or `f8`); compared bit for bit."""

    def __init__(self, dtype: str = "f4") -> None:
        self.wire = self.local = np.dtype("<" + dtype)
        if dtype not in ("f4", "f8"):
            raise ValueError("Float dtype must be f4 or f8")

    def quantise(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column

    def describe(self) -> list[Any]:
        return ["float", self.wire.str[1:]]


class Table:
    """Entities of one kind: a slot per entity, one numpy column per field.

    `spawn(**values)` returns the entity id (its slot); `despawn(id)` frees it. Read and
    write fields through `table["x"]` (the whole column; rows of live entities are
    `table.ids`). Columns grow by doubling when full, so fetch them again after spawning
    rather than keeping references across ticks.
    """

    def __init__(self, name: str, fields: Mapping[str, Field], capacity: int = 64) -> None:
        if not fields:
            raise ValueError(f"table {name!r} needs at least one field")
        for fname, f in fields.items():
            if not isinstance(f, Field):
                raise TypeError(f"{name}.{fname}: {f!r} is not a relay.state field")
        self.name = name
        self.fields = dict(fields)
        self._names = tuple(self.fields)
        self._capacity = max(1, int(capacity))
        self.alive: BoolArray = np.zeros(self._capacity, np.bool_)
        self.gen: npt.NDArray[np.uint32] = np.zeros(self._capacity, np.uint32)
        self._cols: dict[str, npt.NDArray[Any]] = {
            n: np.zeros(self._capacity, f.local) for n, f in self.fields.items()}
        self._free: list[int] = list(range(self._capacity - 1, -1, -1))
        self._ids: IntArray | None = None

    def __getitem__(self, field: str) -> npt.NDArray[Any]:
        return self._cols[field]

    def __setitem__(self, field: str, values: Any) -> None:
        self._cols[field][...] = values

    def __len__(self) -> int:
        return self._capacity - len(self._free)

    def __contains__(self, entity: int) -> bool:
        return 0 <= entity < self._capacity and bool(self.alive[entity])

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def ids(self) -> IntArray:
        """Slots of live entities, ascending."""
        if self._ids is None:
            self._ids = np.flatnonzero(self.alive)
        return self._ids

    def spawn(self, **values: Any) -> int:
        unknown = set(values).difference(self.fields)
        if unknown:
            raise KeyError(f"table {self.name!r} has no field {sorted(unknown)[0]!r}")
        if not self._free:
            self._grow(self._capacity * 2)
        slot = self._free.pop()
        self.alive[slot] = True
        self.gen[slot] += 1
        for name, col in self._cols.items():
            col[slot] = values.get(name, 0)
        self._ids = None
        return slot

    def despawn(self, entity: int) -> None:
        if entity not in self:
            raise KeyError(f"table {self.name!r} has no entity {entity}")
        self.alive[entity] = False
        self._free.append(entity)
        self._ids = None

    def get(self, entity: int) -> dict[str, Any]:
        if entity not in self:
            raise KeyError(f"table {self.name!r} has no entity {entity}")
        return {n: c[entity].item() for n, c in self._cols.items()}

    def set(self, entity: int, **values: Any) -> None:
        if entity not in self:
            raise KeyError(f"table {self.name!r} has no entity {entity}")
        for name, value in values.items():
            self._cols[name][entity] = value

    def _grow(self, capacity: int) -> None:
        old = self._capacity
        self.alive = np.concatenate([self.alive, np.zeros(capacity - old, np.bool_)])
        self.gen = np.concatenate([self.gen, np.zeros(capacity - old, np.uint32)])
        for name, col in self._cols.items():
            self._cols[name] = np.concatenate([col, np.zeros(capacity - old, col.dtype)])
        self._free = list(range(capacity - 1, old - 1, -1)) + self._free
        self._capacity = capacity

    def _freeze(self) -> _Frozen:
        """The quantised copy of this table that goes into the snapshot ring."""
        cols = []
        for name in self._names:
            q = self.fields[name].quantise(self._cols[name])
            cols.append(q.copy() if q is self._cols[name] else q)
        return _Frozen(self.alive.copy(), self.gen.copy(), cols)


class _Frozen:
    __slots__ = ("alive", "gen", "cols", "cells")

    def __init__(self, alive: BoolArray, gen: npt.NDArray[np.uint32],
                 cols: list[npt.NDArray[Any]], cells: npt.NDArray[np.int32] | None = None,
                 ) -> None:
        self.alive = alive
        self.gen = gen
        self.cols = cols
        self.cells = cells  # grid cell of each slot, for tables on an interest grid

    def padded(self, n: int) -> _Frozen:
        extra = n - len(self.alive)
        if extra <= 0:
            return self
        return _Frozen(np.concatenate([self.alive, np.zeros(extra, np.bool_)]),
                       np.concatenate([self.gen, np.zeros(extra, np.uint32)]),
                       [np.concatenate([c, np.zeros(extra, c.dtype)]) for c in self.cols],
                       None if self.cells is None
                       else np.concatenate([self.cells, np.zeros(extra, np.int32)]))


class _Snapshot:
    __slots__ = ("tick", "tables", "doc", "doc_packed")

    def __init__(self, tick: int, tables: dict[str, _Frozen], doc: dict[str, Any],
                 doc_packed: bytes) -> None:
        self.tick = tick
        self.tables = tables
        self.doc = doc
        self.doc_packed = doc_packed


class State:
    """Entity tables plus `doc`, a dict of msgpack-able values (phase, timer, scores).

    The room mutates them during a tick; `commit()` freezes the result as tick N, and
    `snapshot_message()` / `diff_message(base)` give the encoded bytes for clients.
    """

    def __init__(self, tables: Mapping[str, Mapping[str, Field] | Table] | None = None,
                 capacity: int = 64, grid: Grid | None = None) -> None:
        self.tables: dict[str, Table] = {}
        self.grid = grid
        self.doc: dict[str, Any] = {}
        self.tick = 0
        self._ring: list[_Snapshot | None] = [None] * RING_SIZE
        self._diffs: dict[int, bytes] = {}
        self._snapshot: bytes | None = None
        for name, spec in (tables or {}).items():
            self.add_table(name, spec, capacity)
        for name, (fx, fy) in (grid.tables.items() if grid is not None else ()):
            if name not in self.tables or not {fx, fy} <= set(self.tables[name].fields):
                raise ValueError(f"grid table {name!r} needs fields {fx!r} and {fy!r}")

    def add_table(self, name: str, spec: Mapping[str, Field] | Table, capacity: int = 64) -> Table:
        if self.tick:
            raise RuntimeError("tables are declared before the first commit")
        if name in self.tables:
            raise ValueError(f"table {name!r} already exists")
        table = spec if isinstance(spec, Table) else Table(name, spec, capacity)
        self.tables[name] = table
        return table

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def schema(self) -> dict[str, list[list[Any]]]:
        """Field names and kinds per table, as sent in every snapshot."""
        return {t: [[n, *f.describe()] for n, f in tab.fields.items()]
                for t, tab in self.tables.items()}

    # --- ticks ------------------------------------------------------------------------
    def commit(self) -> int:
        """Freeze the current state as the next tick; returns its number."""
        packed = msgpack.packb(self.doc)
        prev = self._ring[self.tick % RING_SIZE] if self.tick else None
        same = prev is not None and prev.doc_packed == packed
        doc = prev.doc if same and prev is not None else msgpack.unpackb(packed)
        self.tick += 1
        frozen = {n: t._freeze() for n, t in self.tables.items()}
        if self.grid is not None:
            for name, (fx, fy) in self.grid.tables.items():
                table = self.tables[name]
                frozen[name].cells = self.grid.cell_of(table[fx], table[fy]).astype(np.int32)
        self._ring[self.tick % RING_SIZE] = _Snapshot(self.tick, frozen, doc, packed)
        self._diffs = {}
        self._snapshot = None
        return self.tick

    def has(self, tick: int) -> bool:
        """Whether tick `tick` is still in the ring (usable as a baseline)."""
        snap = self._ring[tick % RING_SIZE] if tick > 0 else None
        return snap is not None and snap.tick == tick

    def snapshot_message(self) -> bytes:
        """The whole state at the current tick, encoded once per tick."""
        if self._snapshot is None:
            self._snapshot = _ext(self._snapshot_body(self.tables))
        return self._snapshot

    def diff_message(self, base: int) -> bytes:
        """The change from tick `base` (still in the ring) to the current tick, encoded once
        per distinct `base`."""
        cached = self._diffs.get(base)
        if cached is None:
            cached = self._diffs[base] = _ext(self._diff_body(base, self.tables))
        return cached

    def _snapshot_body(self, names: Iterable[str]) -> list[Any]:
        snap = self._current()
        tables = {}
        for name in names:
            fr = snap.tables[name]
            ids = np.flatnonzero(fr.alive)
            tables[name] = [_encode_ids(ids), [_absolute(c[ids]) for c in fr.cols]]
        return [KIND_SNAPSHOT, snap.tick, self.schema(), tables, snap.doc]

    def _diff_body(self, base: int, names: Iterable[str]) -> list[Any]:
        if not self.has(base):
            raise KeyError(f"tick {base} is not in the snapshot ring")
        old, new = self._ring[base % RING_SIZE], self._current()
        assert old is not None
        tables = {}
        for name in names:
            encoded = _diff_table(old.tables[name], new.tables[name])
            if encoded is not None:
                tables[name] = encoded
        ops: list[list[Any]] = []
        if old.doc_packed != new.doc_packed:
            _diff_doc(old.doc, new.doc, [], ops)
        return [KIND_DIFF, new.tick, base, tables, ops]

    # --- interest management (with a grid) -------------------------------------------------
    def set_focus(self, viewer: int, x: float | None, y: float | None = None) -> None:
        """Where `viewer` (a connection id) looks from; None: it sees no cell."""
        if self.grid is None:
            raise RuntimeError("set_focus needs a State with a grid")
        self.grid.set_focus(viewer, x, y)

    def forget(self, viewer: int) -> None:
        if self.grid is not None:
            self.grid.forget(viewer)

    def view_message(self, viewer: int, synced: int) -> bytes:
        """With a grid: what `viewer`, last sent tick `synced` (0: nothing yet), is sent
        this tick: the tables off the grid and the doc, plus the cells it sees."""
        if self.grid is None:
            raise RuntimeError("view_message needs a State with a grid")
        self._current()
        return self.grid.message(self, viewer, synced)

    def message_for(self, acked: int | None) -> bytes:
        """A diff from `acked` when it is still in the ring, else a snapshot."""
        if acked is not None and acked != self.tick and self.has(acked):
            return self.diff_message(acked)
        return self.snapshot_message()

    def _current(self) -> _Snapshot:
        if not self.tick:
            self.commit()
        snap = self._ring[self.tick % RING_SIZE]
        assert snap is not None
        return snap


# --- encoding -------------------------------------------------------------------------------
def _ext(body: list[Any]) -> bytes:
    data: bytes = msgpack.packb(msgpack.ExtType(STATE_EXT, msgpack.packb(body)))
    return data


def _narrowest(lo: int, hi: int, signed: bool = False) -> np.dtype[Any]:
    kinds = _UNSIGNED if lo >= 0 and not signed else _SIGNED
    for dt in kinds:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return kinds[-1]


def _absolute(values: npt.NDArray[Any]) -> list[Any]:
    """Values as [code, bytes], integers in the narrowest type that holds them all."""
    if values.dtype.kind in "iu" and len(values):
        dt = _narrowest(int(values.min()), int(values.max()))
        if dt.itemsize < values.dtype.itemsize:
            values = values.astype(dt)
    return [_CODE[values.dtype], values.tobytes()]


def _encode_ids(ids: IntArray) -> list[Any] | None:
    """Ascending slots as [first, width, bytes]: gaps of `width` bytes, or a bitmap (width 0)
    from `first` when that is smaller; None when there are none."""
    n = len(ids)
    if n == 0:
        return None
    first = int(ids[0])
    span = int(ids[-1]) - first + 1
    bitmap_size = (span + 7) // 8
    if n > 1:
        gaps = np.diff(ids)
        big = int(gaps.max())
        dt = next((d for limit, d in _GAPS if big <= limit), _UNSIGNED[3])
        if (n - 1) * dt.itemsize <= bitmap_size:
            return [first, dt.itemsize, gaps.astype(dt).tobytes()]
    elif bitmap_size >= 1:
        return [first, 1, b""]
    bits = np.zeros(span, np.bool_)
    bits[ids - first] = True
    return [first, 0, np.packbits(bits, bitorder="little").tobytes()]


def _diff_table(old: _Frozen, new: _Frozen) -> list[Any] | None:
    n = len(new.alive)
    old = old.padded(n)
    same = old.alive[:n] & new.alive & (old.gen[:n] == new.gen)
    gone = np.flatnonzero(old.alive[:n] & ~same)
    born = np.flatnonzero(new.alive & ~same)
    masks = [(oc[:n] != nc) & same for oc, nc in zip(old.cols, new.cols, strict=True)]
    any_change: BoolArray = np.logical_or.reduce(masks) if len(masks) > 1 else masks[0]
    changed = np.flatnonzero(any_change)
    if not (len(gone) or len(born) or len(changed)):
        return None
    spawn_cols = [_absolute(c[born]) for c in new.cols] if len(born) else []
    fields: list[Any] = []
    if len(changed):
        for oc, nc, mask in zip(old.cols, new.cols, masks, strict=True):
            rows = np.flatnonzero(mask)
            if not len(rows):
                fields.append(None)
                continue
            sub = None if len(rows) == len(changed) else np.packbits(
                mask[changed], bitorder="little").tobytes()
            fields.append([sub, *_values(oc[rows], nc[rows])])
    return [_encode_ids(gone), _encode_ids(born), spawn_cols, _encode_ids(changed), fields]


def _values(old: npt.NDArray[Any], new: npt.NDArray[Any]) -> list[Any]:
    """Changed values as [code, bytes]: deltas when they are narrower than the values."""
    absolute = _absolute(new)
    if new.dtype.kind not in "iu":
        return absolute
    delta = new.astype(np.int64) - old.astype(np.int64)
    dt = _narrowest(int(delta.min()), int(delta.max()), signed=True)
    if dt.itemsize * len(delta) < len(absolute[1]):
        return [_DELTA + _CODE[dt], delta.astype(dt).tobytes()]
    return absolute


def _diff_doc(old: Any, new: Any, path: list[Any], ops: list[list[Any]]) -> None:
    """Key-path operations turning `old` into `new`: [path, value] sets, [path] deletes."""
    for key in old:
        if key not in new:
            ops.append([[*path, key]])
    for key, value in new.items():
        if key not in old:
            ops.append([[*path, key], value])
            continue
        before = old[key]
        if before == value and type(before) is type(value):
            continue
        if isinstance(before, dict) and isinstance(value, dict):
            _diff_doc(before, value, [*path, key], ops)
        else:
            ops.append([[*path, key], value])

