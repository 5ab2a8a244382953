// The state mirror on hand-made messages that use every part of the wire format, checked
// against the Python SDK's StateMirror (the reference decoder) and by hand.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode, ExtData } from "@msgpack/msgpack";
import { StateError, StateMirror, decodeIds, statePayload } from "../src/index.js";
import { dump, referenceDumps } from "../harness/reference.js";

const bytes = (typed) => new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
const K = (2 * Math.PI) / 256;

const SCHEMA = {
  ships: [["x", "fixed", 0.01, "i4"], ["a", "angle", 256], ["b", "angle", 65536],
    ["big", "int", "i8"], ["fl", "flags", 16], ["f", "float", "f4"]],
  empty: [["n", "int", "u1"]],
};

// tick 1: ids 0, 1, 3 as a bitmap
const snapshot = [1, 1, SCHEMA, {
  ships: [[0, 0, new Uint8Array([0b1011])], [
    [1, bytes(new Int16Array([100, -200, 300]))],
    [4, bytes(new Uint8Array([250, 3, 128]))],
    [5, bytes(new Uint16Array([65000, 10, 0]))],
    [3, bytes(new BigInt64Array([2n ** 40n, -5n, 7n]))],
    [5, bytes(new Uint16Array([1, 2, 3]))],
    [8, bytes(new Float32Array([0.5, 1.5, -2.25]))],
  ]],
  empty: [null, [[4, new Uint8Array(0)]]],
}, { phase: "play", nested: { a: 1 } }];

// tick 2: slot 1 despawned and respawned (a new entity), slot 5 spawned; rows 0 and 3 change
const diff2 = [2, 2, 1, {
  ships: [
    [1, 1, new Uint8Array(0)],
    [1, 2, bytes(new Uint16Array([4]))],
    [
      [0, bytes(new Int8Array([1, 2]))],
      [4, bytes(new Uint8Array([7, 8]))],
      [5, bytes(new Uint16Array([9, 10]))],
      [0, bytes(new Int8Array([-1, -2]))],
      [4, bytes(new Uint8Array([11, 12]))],
      [8, bytes(new Float32Array([0.25, 0.75]))],
    ],
    [0, 1, new Uint8Array([3])],
    [
      [null, 16 + 0, bytes(new Int8Array([5, -7]))], // deltas to x
      [null, 4, bytes(new Uint8Array([5, 2]))], // 250 -> 5 goes forward through 0
      [null, 16 + 1, bytes(new Int16Array([600, -1]))], // 65000 + 600 wraps in u2
      [new Uint8Array([0b01]), 16 + 3, bytes(new BigInt64Array([-1n]))], // only row 0
      [new Uint8Array([0b10]), 4, bytes(new Uint8Array([9]))], // only row 3
      [null, 8, bytes(new Float32Array([1, 2]))],
    ],
  ],
}, [[["nested", "b"], 2], [["phase"]], [["deep", "x", "y"], true]]];

// tick 3: slot 0 despawned (bitmap), nothing else
const diff3 = [2, 3, 2, { ships: [[0, 0, new Uint8Array([1])], null, [], null, [null, null, null, null, null, null]] }, []];

const wrap = (body) => encode(new ExtData(0x53, encode(body)));

test("statePayload tells state messages from room messages by the ext header", () => {
  const msg = wrap(snapshot);
  assert.ok(statePayload(msg) instanceof Uint8Array);
  assert.equal(statePayload(encode({ ship: 1 })), null);
  assert.equal(statePayload("text"), null);
  assert.equal(statePayload(encode(new ExtData(0x10, new Uint8Array([1, 2, 3])))), null);
  const small = encode(new ExtData(0x53, encode([2, 9, 8, {}, []]))); // fixext 8
  assert.deepEqual(statePayload(small), encode([2, 9, 8, {}, []]));
});

test("decodeIds reads gap lists of every width and bitmaps", () => {
  assert.deepEqual(decodeIds(null), []);
  assert.deepEqual(decodeIds([7, 1, new Uint8Array([1, 3])]), [7, 8, 11]);
  assert.deepEqual(decodeIds([2, 2, bytes(new Uint16Array([1000]))]), [2, 1002]);
  assert.deepEqual(decodeIds([0, 4, bytes(new Uint32Array([70000]))]), [0, 70000]);
  assert.deepEqual(decodeIds([10, 0, new Uint8Array([0b101, 0b10000000])]), [10, 12, 25]);
});



test("snapshot and diffs apply as the wire format says", () => {
  const m = new StateMirror();
  assert.equal(m.apply(statePayload(wrap(snapshot))), true);
  let ships = m.table("ships");
  assert.deepEqual(ships.ids, [0, 1, 3]);
  assert.deepEqual(Array.from(ships.values("x").slice(0, 4)), [1, -2, 0, 3]);
  assert.equal(ships.column("big")[0], 2n ** 40n);
  assert.ok(ships.column("x") instanceof Int32Array);
  assert.ok(ships.column("b") instanceof Uint16Array);
  assert.equal(m.table("empty").size, 0);

  assert.equal(m.apply(statePayload(wrap(diff2))), true);
  ships = m.table("ships");
  assert.deepEqual(ships.ids, [0, 1, 3, 5]);
  assert.deepEqual(ships.get(1), { x: 0.01, a: 7 * K, b: 9 * (2 * Math.PI / 65536), big: -1, fl: 11, f: 0.25 });
  assert.equal(ships.column("x")[0], 105);
  assert.equal(ships.column("x")[3], 293);
  assert.equal(ships.column("b")[0], (65000 + 600) % 65536);
  assert.equal(ships.column("big")[0], 2n ** 40n - 1n);
  assert.equal(ships.column("big")[3], 7n, "row 3 is not in the mask");
  assert.equal(ships.column("fl")[0], 1, "row 0 is not in the mask");
  assert.equal(ships.column("fl")[3], 9);
  assert.deepEqual(m.doc, { nested: { a: 1, b: 2 }, deep: { x: { y: true } } });

  // the angle 250 -> 5 steps goes the short way, forward through 0
  assert.ok(Math.abs(m.lerp("ships", "a", 0.5)[0] - 255.5 * K) < 1e-12);
  assert.equal(m.lerp("ships", "x", 0.5)[0], 1.025);
  assert.equal(m.lerp("ships", "f", 0.25)[3], -2.25 + 4.25 * 0.25);
  // as the Python reference does, a slot despawned and respawned in one diff is
  // interpolated from the old entity (docs/protocol.md calls it a new entity)
  assert.equal(m.lerp("ships", "x", 0.5)[1], -2 + (0.01 + 2) * 0.5);
  assert.equal(m.lerp("ships", "x", 0.5)[5], 0.02, "a slot that was free has nothing to lerp from");

  assert.equal(m.apply(statePayload(wrap(diff2))), false, "a repeated tick is ignored");
  assert.equal(m.apply(statePayload(wrap(diff3))), true);
  assert.deepEqual(m.table("ships").ids, [1, 3, 5]);
  assert.throws(() => m.apply(statePayload(wrap([2, 9, 7, {}, []]))), StateError);
  assert.throws(() => m.apply(new Uint8Array([0xc1])), StateError);
});

test("the mirror agrees with the Python SDK's StateMirror tick by tick", () => {
  const payloads = [snapshot, diff2, diff2, diff3].map((b) => statePayload(wrap(b)));
  const m = new StateMirror();
  const mine = [];
  for (const p of payloads) if (m.apply(p)) mine.push(dump(m));
  const theirs = referenceDumps(payloads);
  assert.equal(mine.length, 3);
  assert.deepEqual(JSON.parse(JSON.stringify(mine)), theirs);
});

test("with history, a diff against an older acknowledged tick applies", () => {
  const m = new StateMirror(4);
  m.apply(statePayload(wrap(snapshot)));
  m.apply(statePayload(wrap(diff2)));
  const fromOne = [2, 3, 1, {}, [[["late"], 1]]]; // against tick 1, skipping tick 2
  assert.equal(m.apply(statePayload(wrap(fromOne))), true);
  assert.deepEqual(m.table("ships").ids, [0, 1, 3]);
  assert.deepEqual(m.doc, { phase: "play", nested: { a: 1 }, late: 1 });
});
