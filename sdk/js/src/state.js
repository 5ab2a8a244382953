// The client's mirror of a room's state: applies the relay's snapshots and diffs.
// Format: docs/protocol.md, "State"; a port of the Python SDK's StateMirror (the reference).
import { decode, ExtData } from "@msgpack/msgpack";

export const STATE_EXT = 0x53;
export const KIND_SNAPSHOT = 1;
export const KIND_DIFF = 2;
export const WIRE_DTYPES = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8"];
const DELTA = 16;
// first byte of a msgpack ext value -> index of its type byte
const EXT_HEADS = { 0xd4: 1, 0xd5: 1, 0xd6: 1, 0xd7: 1, 0xd8: 1, 0xc7: 2, 0xc8: 3, 0xc9: 5 };
const ARRAYS = {
  i1: Int8Array, i2: Int16Array, i4: Int32Array, i8: BigInt64Array,
  u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, u8: BigUint64Array,
  f4: Float32Array, f8: Float64Array,
};
const TAU = 2 * Math.PI;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A state message that cannot be applied (malformed, or its baseline is unknown). */
export class StateError extends Error {
  constructor(message) {
    super(message);
    this.name = "StateError";
  }
}

/** The body of a state message, or null when `message` is an ordinary room message. */
export function statePayload(message) {
  if (!(message instanceof Uint8Array) || message.length < 3) return null;
  const at = EXT_HEADS[message[0]];
  if (at === undefined || message[at] !== STATE_EXT) return null;
  const ext = decode(message);
  return ext instanceof ExtData ? ext.data : null;
}

function wireArray(code, bytes) {
  const name = WIRE_DTYPES[code & 15];
  const Ctor = ARRAYS[name];
  if (!Ctor) throw new StateError(`unknown column type code ${code}`);
  const size = Ctor.BYTES_PER_ELEMENT;
  if (!(bytes instanceof Uint8Array) || bytes.length % size) {
    throw new StateError(`column of ${name} has ${bytes?.length} bytes`);
  }
  const n = bytes.length / size;
  if (LITTLE_ENDIAN) return new Ctor(bytes.slice().buffer, 0, n); // slice: aligned copy
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Ctor(n);
  const read = {
    i1: (o) => view.getInt8(o), i2: (o) => view.getInt16(o, true), i4: (o) => view.getInt32(o, true),
    i8: (o) => view.getBigInt64(o, true), u1: (o) => view.getUint8(o),
    u2: (o) => view.getUint16(o, true), u4: (o) => view.getUint32(o, true),
    u8: (o) => view.getBigUint64(o, true), f4: (o) => view.getFloat32(o, true),
    f8: (o) => view.getFloat64(o, true),
  }[name];
  for (let i = 0; i < n; i++) out[i] = read(i * size);
  return out;
}

/** Bits of a little-endian-first bitmap as the positions that are set. */
function bitPositions(bytes, limit = Infinity) {
  const out = [];
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (!b) continue;
    for (let bit = 0; bit < 8; bit++) {
      const pos = i * 8 + bit;
      if (pos >= limit) return out;
      if (b & (1 << bit)) out.push(pos);
    }
  }
  return out;
}

/** An id list (`nil` or `[first, width, bytes]`) as an array of ascending ids. */
export function decodeIds(enc) {
  if (enc === null || enc === undefined) return [];
  const [first, width, data] = enc;
  if (width === 0) return bitPositions(data).map((p) => p + first);
  const gaps = wireArray({ 1: 4, 2: 5, 4: 6 }[width] ?? -1, data);
  const ids = new Array(gaps.length + 1);
  ids[0] = first;
  for (let i = 0; i < gaps.length; i++) ids[i + 1] = ids[i] + gaps[i];
  return ids;
}

function wireDtype(kind) {
  switch (kind[0]) {
    case "fixed": return kind[2];
    case "angle": return kind[1] === 256 ? "u1" : "u2";
    case "flags": return `u${kind[1] / 8}`;
    default: return kind[1];
  }
}

/** One entity table: `ids` of live entities, `column(f)` wire values, `values(f)` in game
 * units (metres, radians). Columns are indexed by entity id (slot). */
export class MirrorTable {
  constructor(name, schema) {
    this.name = name;
    this.schema = {};
    this.names = [];
    this.columns = {};
    for (const [field, ...kind] of schema) {
      const Ctor = ARRAYS[wireDtype(kind)];
      if (!Ctor) throw new StateError(`field ${name}.${field} has an unknown kind ${JSON.stringify(kind)}`);
      this.schema[field] = kind;
      this.names.push(field);
      this.columns[field] = new Ctor(0);
    }
    this.alive = new Uint8Array(0);
  }

  get ids() {
    const out = [];
    for (let i = 0; i < this.alive.length; i++) if (this.alive[i]) out.push(i);
    return out;
  }

  get size() {
    let n = 0;
    for (let i = 0; i < this.alive.length; i++) n += this.alive[i];
    return n;
  }

  has(entity) {
    return entity >= 0 && entity < this.alive.length && this.alive[entity] === 1;
  }

  column(field) {
    const col = this.columns[field];
    if (!col) throw new RangeError(`table ${this.name} has no field ${field}`);
    return col;
  }

  /** The whole column in game units: fixed fields times their precision, angles in
   * radians, everything else as sent (64-bit integers as Numbers). */
  values(field) {
    const col = this.column(field);
    const kind = this.schema[field];
    if (kind[0] === "fixed") {
      const p = kind[1];
      return Float64Array.from(col, (v) => Number(v) * p);
    }
    if (kind[0] === "angle") {
      const k = TAU / kind[1];
      return Float64Array.from(col, (v) => v * k);
    }
    if (col instanceof BigInt64Array || col instanceof BigUint64Array) {
      return Float64Array.from(col, (v) => Number(v));
    }
    return col;
  }

  get(entity) {
    if (!this.has(entity)) throw new RangeError(`table ${this.name} has no entity ${entity}`);
    const out = {};
    for (const f of this.names) out[f] = this.values(f)[entity];
    return out;
  }

  _reserve(n) {
    if (n <= this.alive.length) return;
    const size = Math.max(n, 2 * this.alive.length, 16);
    const alive = new Uint8Array(size);
    alive.set(this.alive);
    this.alive = alive;
    for (const f of this.names) {
      const old = this.columns[f];
      const col = new old.constructor(size);
      col.set(old);
      this.columns[f] = col;
    }
  }

  _copy() {
    const twin = Object.create(MirrorTable.prototype);
    twin.name = this.name;
    twin.schema = this.schema;
    twin.names = this.names;
    twin.alive = this.alive.slice();
    twin.columns = {};
    for (const f of this.names) twin.columns[f] = this.columns[f].slice();
    return twin;
  }
}

function addInto(col, row, delta) {
  if (typeof col[0] === "bigint" || col instanceof BigInt64Array || col instanceof BigUint64Array) {
    col[row] = col[row] + BigInt(delta); // the typed array wraps like numpy's astype
  } else if (typeof delta === "bigint") {
    const bits = col.BYTES_PER_ELEMENT * 8;
    col[row] = Number(BigInt.asIntN(bits, BigInt(col[row]) + delta));
  } else {
    col[row] = col[row] + delta; // exact below 2**53, then wrapped on store
  }
}

function applyOp(doc, op) {
  const path = op[0];
  let node = doc;
  for (const key of path.slice(0, -1)) {
    let next = node[key];
    if (next === null || typeof next !== "object" || Array.isArray(next) || next instanceof Uint8Array) {
      next = node[key] = {};
    }
    node = next;
  }
  const last = path[path.length - 1];
  if (op.length === 1) delete node[last];
  else node[last] = op[1];
}

/** Applies state messages in order. With `history` > 1 it keeps that many past ticks, so a
 * diff against any of them (an acknowledged baseline) can be applied. */
export class StateMirror {
  constructor(history = 1) {
    this.tick = 0;
    this.tables = {};
    this.doc = {};
    this.previous = null;
    this._history = Math.max(1, history);
    this._past = new Map();
    this._resync = false;
  }

  table(name) {
    const t = this.tables[name];
    if (!t) throw new RangeError(`no table ${name}`);
    return t;
  }

  /** After a reconnect the relay may be a new process whose ticks start again at 1: the
   * next snapshot is taken whatever its tick, and diffs are ignored until it comes. */
  expectSnapshot() {
    this._resync = true;
  }

  /** Apply one state message body; false when it is older than what is applied (a
   * reordered or repeated message), true when the mirror moved to its tick. */
  apply(payload) {
    let body, kind, tick;
    try {
      body = decode(payload);
      [kind, tick] = body;
    } catch (e) {
      throw new StateError(`malformed state message: ${e.message}`);
    }
    if (this._resync) {
      if (kind !== KIND_SNAPSHOT) return false;
      this._resync = false;
      this._past.clear();
      this._loadSnapshot(body);
      this.tick = tick;
      this.previous = null; // possibly another world: nothing to interpolate from
      this._remember();
      return true;
    }
    if (!(tick > this.tick)) return false;
    const before = this._freeze();
    if (kind === KIND_SNAPSHOT) {
      this._loadSnapshot(body);
    } else if (kind === KIND_DIFF) {
      const base = body[2];
      if (base === this.tick) {
        // applies to what we have
      } else if (this._past.has(base)) {
        this._restore(this._past.get(base));
      } else {
        throw new StateError(`diff against tick ${base}, which this mirror does not have`);
      }
      this._applyDiff(body);
    } else {
      throw new StateError(`unknown state message kind ${kind}`);
    }
    this.tick = tick;
    this.previous = before;
    this._remember();
    return true;
  }

  /** Values of `field` between the previous tick (alpha 0) and this one (alpha 1); entities
   * that did not exist at the previous tick get their current value. Angles take the short
   * way round. */
  lerp(table, field, alpha) {
    const cur = this.table(table);
    const now = cur.values(field);
    const prevState = this.previous;
    if (prevState === null || !(table in prevState.tables)) return Float64Array.from(now, Number);
    const prev = prevState.tables[table];
    const n = now.length;
    const old = prev.values(field);
    const angle = cur.schema[field][0] === "angle";
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v = Number(now[i]);
      if (!(cur.alive[i] && i < prev.alive.length && prev.alive[i])) {
        out[i] = v;
        continue;
      }
      const o = Number(old[i]);
      let delta = v - o;
      if (angle) {
        delta = (delta + Math.PI) % TAU; // floor modulo, as Python's %
        if (delta !== 0 && delta < 0) delta += TAU;
        delta -= Math.PI;
      }
      out[i] = o + delta * alpha;
    }
    return out;
  }

  // --- internals --------------------------------------------------------------------------
  _remember() {
    if (this._history <= 1) return;
    this._past.set(this.tick, this._freeze());
    for (const t of [...this._past.keys()]) {
      if (t <= this.tick - this._history) this._past.delete(t);
    }
  }

  _freeze() {
    const twin = new StateMirror();
    twin.tick = this.tick;
    for (const [n, t] of Object.entries(this.tables)) twin.tables[n] = t._copy();
    twin.doc = structuredClone(this.doc);
    return twin;
  }

  _restore(other) {
    this.tables = {};
    for (const [n, t] of Object.entries(other.tables)) this.tables[n] = t._copy();
    this.doc = structuredClone(other.doc);
  }

  _loadSnapshot(body) {
    const [, , schema, tables, doc] = body;
    this.tables = {};
    for (const [name, fields] of Object.entries(schema)) this.tables[name] = new MirrorTable(name, fields);
    for (const [name, [idsEnc, cols]] of Object.entries(tables)) {
      const t = this.tables[name];
      if (!t) throw new StateError(`snapshot has table ${name} without a schema`);
      const ids = decodeIds(idsEnc);
      if (!ids.length) continue;
      t._reserve(ids[ids.length - 1] + 1);
      for (const id of ids) t.alive[id] = 1;
      this._setColumns(t, ids, cols);
    }
    this.doc = doc ?? {};
  }

  _setColumns(t, ids, cols) {
    if (cols.length !== t.names.length) {
      throw new StateError(`table ${t.name}: ${cols.length} columns for ${t.names.length} fields`);
    }
    t.names.forEach((f, i) => {
      const vals = wireArray(cols[i][0], cols[i][1]);
      if (vals.length !== ids.length) throw new StateError(`table ${t.name}.${f}: ${vals.length} values for ${ids.length} ids`);
      const col = t.columns[f];
      const big = col instanceof BigInt64Array || col instanceof BigUint64Array;
      for (let k = 0; k < ids.length; k++) {
        const v = vals[k];
        col[ids[k]] = big ? BigInt(v) : Number(v);
      }
    });
  }

  _applyDiff(body) {
    const [, , , tables, ops] = body;
    for (const [name, [goneEnc, bornEnc, spawnCols, changedEnc, fields]] of Object.entries(tables)) {
      const t = this.tables[name];
      if (!t) throw new StateError(`diff has table ${name}, which the snapshot did not`);
      for (const id of decodeIds(goneEnc)) if (id < t.alive.length) t.alive[id] = 0;
      const born = decodeIds(bornEnc);
      if (born.length) {
        t._reserve(born[born.length - 1] + 1);
        for (const id of born) t.alive[id] = 1;
        this._setColumns(t, born, spawnCols);
      }
      const changed = decodeIds(changedEnc);
      const n = Math.min(t.names.length, fields.length);
      for (let i = 0; i < n; i++) {
        const entry = fields[i];
        if (entry === null || entry === undefined) continue;
        const [sub, code, data] = entry;
        const rows = sub === null || sub === undefined
          ? changed
          : bitPositions(sub, changed.length).map((p) => changed[p]);
        const vals = wireArray(code, data);
        if (vals.length !== rows.length) {
          throw new StateError(`table ${name}.${t.names[i]}: ${vals.length} values for ${rows.length} rows`);
        }
        const col = t.columns[t.names[i]];
        const big = col instanceof BigInt64Array || col instanceof BigUint64Array;
        if (code >= DELTA) {
          for (let k = 0; k < rows.length; k++) addInto(col, rows[k], vals[k]);
        } else {
          for (let k = 0; k < rows.length; k++) col[rows[k]] = big ? BigInt(vals[k]) : Number(vals[k]);
        }
      }
    }
    for (const op of ops ?? []) applyOp(this.doc, op);
  }
}
