"""A room's replicated state: entity tables in numpy columns plus a small document.

Each tick the state is committed into a ring of quantised snapshots; a diff between
any two of them is found by column comparison and encoded once (format in docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgpack
import numpy as np
import numpy.typing as npt

from relay.state.codec import (
    KIND_DIFF,
    KIND_SNAPSHOT,
    BoolArray,
    Frozen,
    IntArray,
    absolute,
    diff_doc,
    diff_table,
    encode_ids,
    state_message,
)
from relay.state.fields import Field

__all__ = ["RING_SIZE", "InterestGrid", "Snapshot", "State", "Table"]

RING_SIZE = 32
"""Snapshots kept for acknowledged baselines; a client further behind gets a snapshot."""


class InterestGrid(Protocol):
    """What a State asks of its interest grid (relay.state.interest.Grid)."""

    @property
    def tables(self) -> Mapping[str, tuple[str, str]]: ...

    def cell_of(self, x: Any, y: Any) -> Any: ...

    def set_focus(self, viewer: int, x: float | None, y: float | None = None) -> None: ...

    def forget(self, viewer: int) -> None: ...

    def message(self, state: State, viewer: int, synced: int) -> bytes: ...


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

    def _freeze(self) -> Frozen:
        """The quantised copy of this table that goes into the snapshot ring."""
        cols = []
        for name in self._names:
            q = self.fields[name].quantise(self._cols[name])
            cols.append(q.copy() if q is self._cols[name] else q)
        return Frozen(self.alive.copy(), self.gen.copy(), cols)


class Snapshot:
    """One committed tick in the ring: every table frozen, the doc and its msgpack bytes."""

    __slots__ = ("tick", "tables", "doc", "doc_packed")

    def __init__(self, tick: int, tables: dict[str, Frozen], doc: dict[str, Any],
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
                 capacity: int = 64, grid: InterestGrid | None = None) -> None:
        self.tables: dict[str, Table] = {}
        self.grid = grid
        self.doc: dict[str, Any] = {}
        self.tick = 0
        self._ring: list[Snapshot | None] = [None] * RING_SIZE
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
        self._ring[self.tick % RING_SIZE] = Snapshot(self.tick, frozen, doc, packed)
        self._diffs = {}
        self._snapshot = None
        return self.tick

    def has(self, tick: int) -> bool:
        """Whether tick `tick` is still in the ring (usable as a baseline)."""
        snap = self._ring[tick % RING_SIZE] if tick > 0 else None
        return snap is not None and snap.tick == tick

    def snapshot(self, tick: int) -> Snapshot:
        """Tick `tick` as it was committed, while it is still in the ring."""
        snap = self._ring[tick % RING_SIZE] if tick > 0 else None
        if snap is None or snap.tick != tick:
            raise KeyError(f"tick {tick} is not in the snapshot ring")
        return snap

    def current(self) -> Snapshot:
        """The current tick's snapshot; commits tick 1 when nothing was committed yet."""
        if not self.tick:
            self.commit()
        snap = self._ring[self.tick % RING_SIZE]
        assert snap is not None
        return snap

    def snapshot_message(self) -> bytes:
        """The whole state at the current tick, encoded once per tick."""
        if self._snapshot is None:
            self._snapshot = state_message(self.snapshot_body(self.tables))
        return self._snapshot

    def diff_message(self, base: int) -> bytes:
        """The change from tick `base` (still in the ring) to the current tick, encoded once
        per distinct `base`."""
        cached = self._diffs.get(base)
        if cached is None:
            cached = self._diffs[base] = state_message(self.diff_body(base, self.tables))
        return cached

    def snapshot_body(self, names: Iterable[str]) -> list[Any]:
        """The snapshot body (before the ext wrapping) of tables `names` and the doc."""
        snap = self.current()
        tables = {}
        for name in names:
            fr = snap.tables[name]
            ids = np.flatnonzero(fr.alive)
            tables[name] = [encode_ids(ids), [absolute(c[ids]) for c in fr.cols]]
        return [KIND_SNAPSHOT, snap.tick, self.schema(), tables, snap.doc]

    def diff_body(self, base: int, names: Iterable[str]) -> list[Any]:
        """The diff body (before the ext wrapping) of tables `names` and the doc from tick
        `base`, which must still be in the ring."""
        old, new = self.snapshot(base), self.current()
        tables = {}
        for name in names:
            encoded = diff_table(old.tables[name], new.tables[name])
            if encoded is not None:
                tables[name] = encoded
        ops: list[list[Any]] = []
        if old.doc_packed != new.doc_packed:
            diff_doc(old.doc, new.doc, [], ops)
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
        self.current()
        return self.grid.message(self, viewer, synced)

    def message_for(self, acked: int | None) -> bytes:
        """A diff from `acked` when it is still in the ring, else a snapshot."""
        if acked is not None and acked != self.tick and self.has(acked):
            return self.diff_message(acked)
        return self.snapshot_message()

