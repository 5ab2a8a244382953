"""Interest management: a grid of cells over the world; each viewer sees the cells around
its focus. Per tick, each cell's changes are encoded once (all cells in one vectorised
pass), and a viewer's message is the concatenation of the cells it sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from relay.state.codec import CODE, DELTA_FLAG, STATE_EXT, Frozen, narrowest
from relay.state.core import State

__all__ = ["Grid"]

KIND_VIEW = 3
# Bundle kinds: what a viewer does with one (table, cell) part of a view message.
DROP, FULL, DELTA = 0, 1, 2
HEADER = np.dtype([("kind", "u1"), ("table", "u1"), ("cell", "<u4"), ("n0", "<u4"),
                   ("n1", "<u4"), ("n2", "<u4")])


class Grid:
    """`columns` x `rows` square cells of `cell` game units from `origin`; `tables` maps each
    table that is placed on the grid to its (x, y) fields. Entities outside the grid count
    as in the nearest border cell. A viewer sees the cells within `radius` of its focus."""

    def __init__(self, cell: float, columns: int, rows: int,
                 tables: Mapping[str, tuple[str, str]], radius: int = 1,
                 origin: tuple[float, float] = (0.0, 0.0)) -> None:
        if not cell > 0:
            raise ValueError("cell size must be positive")
        if columns < 1 or rows < 1 or columns * rows >= 2**32:
            raise ValueError("the grid needs 1 to 2**32 - 1 cells")
        if radius < 0:
            raise ValueError("radius must be >= 0")
        self.cell = float(cell)
        self.columns = int(columns)
        self.rows = int(rows)
        self.tables = dict(tables)
        self.radius = int(radius)
        self.origin = (float(origin[0]), float(origin[1]))
        self._near: dict[int, list[int]] = {}
        self._spans: dict[int, list[tuple[int, int]]] = {}
        self._viewers: dict[int, _Viewer] = {}
        self._tick = -1
        self._cache: dict[Any, bytes] = {}
        self._bundles: dict[tuple[str, int], _Bundles] = {}
        self._prefix: dict[int, bytes] = {}

    @property
    def cells(self) -> int:
        return self.columns * self.rows

    def cell_of(self, x: Any, y: Any) -> Any:
        """Cell index (row * columns + column) of positions, clipped to the grid."""
        c = np.floor((np.asarray(x) - self.origin[0]) / self.cell)
        r = np.floor((np.asarray(y) - self.origin[1]) / self.cell)
        c = np.clip(np.nan_to_num(c, nan=0.0), 0, self.columns - 1).astype(np.int64)
        r = np.clip(np.nan_to_num(r, nan=0.0), 0, self.rows - 1).astype(np.int64)
        return r * self.columns + c

    def near(self, cell: int) -> list[int]:
        """Cells a viewer focused on `cell` sees, ascending."""
        cells = self._near.get(cell)
        if cells is None:
            r0, c0 = divmod(cell, self.columns)
            k = self.radius
            cells = [r * self.columns + c
                     for r in range(max(0, r0 - k), min(self.rows, r0 + k + 1))
                     for c in range(max(0, c0 - k), min(self.columns, c0 + k + 1))]
            self._near[cell] = cells
        return cells

    def spans(self, cell: int) -> list[tuple[int, int]]:
        """The cells a viewer focused on `cell` sees, as (first, last) runs, one per row."""
        runs = self._spans.get(cell)
        if runs is None:
            runs = []
            for c in self.near(cell):
                if runs and runs[-1][1] == c - 1:
                    runs[-1] = (runs[-1][0], c)
                else:
                    runs.append((c, c))
            self._spans[cell] = runs
        return runs

    # --- viewers -------------------------------------------------------------------------
    def set_focus(self, viewer: int, x: float | None, y: float | None = None) -> None:
        v = self._viewers.get(viewer)
        if v is None:
            v = self._viewers[viewer] = _Viewer()
        v.focus = -1 if x is None or y is None else int(self.cell_of(x, y))

    def forget(self, viewer: int) -> None:
        self._viewers.pop(viewer, None)

    def visible(self, viewer: int) -> list[int]:
        v = self._viewers.get(viewer)
        return [] if v is None or v.focus < 0 else self.near(v.focus)

    def message(self, state: State, viewer: int, synced: int) -> bytes:
        """The view message that takes `viewer` (last sent tick `synced`) to the current tick.
        Call it once per viewer per tick: it records what the viewer was sent."""
        tick = state.tick
        if tick != self._tick:
            self._tick = tick
            self._cache = {}
            self._bundles = {}
            self._prefix = {}
        v = self._viewers.get(viewer)
        if v is None:
            v = self._viewers[viewer] = _Viewer()
        fresh = not (synced and synced == tick - 1 and v.sent_tick == synced)
        key = (v.focus,) if fresh else (v.sent_focus, v.focus)
        msg = self._cache.get(key)
        if msg is None:
            msg = self._cache[key] = self._build(state, fresh, v.sent_focus, v.focus)
        v.sent_tick = tick
        v.sent_focus = v.focus
        return msg

    # --- encoding ------------------------------------------------------------------------
    def _build(self, state: State, fresh: bool, old_focus: int, focus: int) -> bytes:
        base = 0 if fresh else state.tick - 1
        prefix = self._prefix.get(base)
        if prefix is None:
            prefix = self._prefix[base] = self._head(state, base)
        parts = [prefix]
        if focus >= 0 and (fresh or old_focus < 0 or old_focus == focus):
            # The common cases: a cell row of the view is one contiguous span of bundles.
            kind = FULL if fresh or old_focus < 0 else DELTA
            spans = self.spans(focus)
            for ti, name in enumerate(self.tables):
                bundles = self._get(state, name, ti, kind)
                buf, off = bundles.buf, bundles.offsets
                parts.extend([buf[off[a]:off[b + 1]] for a, b in spans])
        elif focus >= 0 or old_focus >= 0:
            now = self.near(focus) if focus >= 0 else []
            before = [] if fresh or old_focus < 0 else self.near(old_focus)
            kept = set(before).intersection(now)
            for ti, name in enumerate(self.tables):
                if before:
                    drops = self._get(state, name, ti, DROP)
                    parts.extend(drops.part(c) for c in before if c not in kept)
                if kept:
                    deltas = self._get(state, name, ti, DELTA)
                    parts.extend(deltas.part(c) for c in now if c in kept)
                if len(kept) < len(now):
                    fulls = self._get(state, name, ti, FULL)
                    parts.extend(fulls.part(c) for c in now if c not in kept)
        body = b"".join(parts)
        return b"\xc9" + len(body).to_bytes(4, "big") + bytes((STATE_EXT,)) + body

    def _head(self, state: State, base: int) -> bytes:
        """[3, tick, base, global, layouts]: `global` is a snapshot (base 0) or diff body of
        the tables not on the grid and the document."""
        others = [n for n in state.tables if n not in self.tables]
        body = state.snapshot_body(others) if base == 0 else state.diff_body(base, others)
        layouts = [self._layout(state, name, base) for name in self.tables]
        head: bytes = msgpack.packb([KIND_VIEW, state.tick, base, body, layouts])
        return head

    def _layout(self, state: State, name: str, base: int) -> list[Any]:
        """[table, id code, [record codes], [delta record codes]] of a grid table this tick."""
        deltas = self._get(state, name, list(self.tables).index(name), DELTA).codes if base else []
        return [name, CODE[_id_dtype(state, name)],
                [CODE[d] for d in _record_dtypes(state, name)], deltas]

    def _get(self, state: State, name: str, ti: int, kind: int) -> _Bundles:
        got = self._bundles.get((name, kind))
        if got is None:
            got = self._bundles[(name, kind)] = _make_bundles(self, state, name, ti, kind)
        return got


class _Viewer:
    __slots__ = ("focus", "sent_focus", "sent_tick")

    def __init__(self) -> None:
        self.focus = -1
        self.sent_focus = -1
        self.sent_tick = 0


class _Bundles:
    """Every cell's bundle of one kind for one table at one tick, in one buffer."""

    __slots__ = ("buf", "offsets", "codes")

    def __init__(self, buf: bytes, offsets: list[int], codes: list[int]) -> None:
        self.buf = buf
        self.offsets = offsets  # cell c's bundle is buf[offsets[c]:offsets[c + 1]], maybe empty
        self.codes = codes

    def part(self, cell: int) -> bytes:
        return self.buf[self.offsets[cell]:self.offsets[cell + 1]]


def _id_dtype(state: State, name: str) -> np.dtype[Any]:
    return np.dtype("<u2") if state.tables[name].capacity <= 65536 else np.dtype("<u4")


def _record_dtypes(state: State, name: str) -> list[np.dtype[Any]]:
    return [f.wire for f in state.tables[name].fields.values()]


def _records(ids: npt.NDArray[Any], id_dtype: np.dtype[Any], cols: list[npt.NDArray[Any]],
             dtypes: list[np.dtype[Any]]) -> npt.NDArray[np.uint8]:
    """Packed fixed-width records (id, then each column), one row of bytes per entity."""
    rec = np.empty(len(ids), np.dtype([("id", id_dtype)] + [
        (f"f{i}", d) for i, d in enumerate(dtypes)]))
    rec["id"] = ids
    for i, col in enumerate(cols):
        rec[f"f{i}"] = col
    return rec.view(np.uint8).reshape(len(ids), rec.dtype.itemsize)


def _make_bundles(grid: Grid, state: State, name: str, ti: int, kind: int) -> _Bundles:
    snap = state.current()
    new = snap.tables[name]
    assert new.cells is not None
    idt = _id_dtype(state, name)
    dtypes = _record_dtypes(state, name)
    codes: list[int] = []
    groups: list[tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]] = []
    if kind == FULL:
        ids = np.flatnonzero(new.alive)
        groups.append((new.cells[ids], _records(ids, idt, [c[ids] for c in new.cols], dtypes)))
    else:
        old = state.snapshot(state.tick - 1).tables[name].padded(len(new.alive))
        assert old.cells is not None
        n = len(new.alive)
        old_cells = old.cells[:n]
        if kind == DROP:
            ids = np.flatnonzero(old.alive[:n])
            groups.append((old_cells[ids], _records(ids, idt, [], [])))
        else:
            groups, codes = _delta_groups(old, new, old_cells, idt, dtypes)
    return _pack(grid, ti, kind, groups, codes)


def _delta_groups(old: Frozen, new: Frozen, old_cells: npt.NDArray[Any],
                  idt: np.dtype[Any], dtypes: list[np.dtype[Any]],
                  ) -> tuple[list[tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]], list[int]]:
    """Per cell: who left it, who entered it (full records), who stayed and changed (deltas
    for integer fields, new values for floats)."""
    assert new.cells is not None
    n = len(new.alive)
    same = old.alive[:n] & new.alive & (old.gen[:n] == new.gen)
    stay = same & (old_cells == new.cells)
    left = np.flatnonzero(old.alive[:n] & ~stay)
    entered = np.flatnonzero(new.alive & ~stay)
    changed_any = np.zeros(n, np.bool_)
    for oc, nc in zip(old.cols, new.cols, strict=True):
        changed_any |= oc[:n] != nc
    changed = np.flatnonzero(changed_any & stay)
    cols, delta_dtypes, codes = [], [], []
    for oc, nc in zip(old.cols, new.cols, strict=True):
        if nc.dtype.kind in "iu":
            d = nc[changed].astype(np.int64) - oc[changed].astype(np.int64)
            dt = narrowest(int(d.min()), int(d.max()), signed=True) if len(d) else np.dtype("<i1")
            cols.append(d)
            delta_dtypes.append(dt)
            codes.append(DELTA_FLAG + CODE[dt])
        else:
            cols.append(nc[changed])
            delta_dtypes.append(nc.dtype)
            codes.append(CODE[nc.dtype])
    groups = [
        (old_cells[left], _records(left, idt, [], [])),
        (new.cells[entered], _records(entered, idt, [c[entered] for c in new.cols], dtypes)),
        (new.cells[changed], _records(changed, idt, cols, delta_dtypes)),
    ]
    return groups, codes


def _pack(grid: Grid, ti: int, kind: int,
          groups: list[tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]],
          codes: list[int]) -> _Bundles:
    """Lay out every cell's bundle (header, then each group's records of that cell) in one
    buffer, cells in order, with vectorised scatters: no Python loop over cells or entities.
    A cell with no records has an empty bundle, so a row of cells is one contiguous span."""
    ncells = grid.cells
    hsize = HEADER.itemsize
    counts = [np.bincount(cells, minlength=ncells) for cells, _ in groups]
    sizes = np.zeros(ncells, np.int64)
    for cnt, (_, recs) in zip(counts, groups, strict=True):
        sizes += cnt * recs.shape[1]
    used = np.flatnonzero(sum(counts))
    sizes[used] += hsize
    offsets = np.zeros(ncells + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = np.empty(int(offsets[-1]), np.uint8)
    head = np.zeros(len(used), HEADER)
    head["kind"] = kind
    head["table"] = ti
    head["cell"] = used
    for i, cnt in enumerate(counts):
        head[f"n{i}"] = cnt[used]
    buf[offsets[used][:, None] + np.arange(hsize)] = head.view(np.uint8).reshape(len(used), hsize)
    pos = offsets[:-1] + hsize
    for cnt, (cells, recs) in zip(counts, groups, strict=True):
        width = recs.shape[1]
        if len(cells):
            order = np.argsort(cells, kind="stable")
            sorted_cells = cells[order]
            starts = np.cumsum(cnt) - cnt
            dest = pos[sorted_cells] + (np.arange(len(cells)) - starts[sorted_cells]) * width
            buf[dest[:, None] + np.arange(width)] = recs[order]
        pos = pos + cnt * width
    return _Bundles(buf.tobytes(), offsets.tolist(), codes)
