// The state benchmark's Colyseus side: replays the scenario file written by
// loadtest/state/scenario.py with @colyseus/schema and prints one JSON line per variant.
// usage: node colyseus.mjs CACHE_DIR SCENARIO_FILE VARIANT...   (VARIANT: map, array, map-quantized)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [cache, scenarioPath, ...variants] = process.argv.slice(2);
const require = createRequire(join(cache, "package.json"));
const { schema, t, Encoder, Decoder } = require("@colyseus/schema");
const version = JSON.parse(readFileSync(join(cache, "node_modules/@colyseus/schema/package.json"), "utf8")).version;

function readScenario(path) {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.toString("latin1", 0, 4) !== "STB1") throw new Error(`${path}: not a scenario file`);
  const n = dv.getUint32(4, true), ticks = dv.getUint32(8, true), m = dv.getUint32(12, true);
  let at = 16;
  // Copies, so that every typed array is aligned whatever its offset in the file.
  const f64 = (k) => { const a = new Float64Array(buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + 8 * k)); at += 8 * k; return a; };
  const u32 = (k) => { const a = new Uint32Array(buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + 4 * k)); at += 4 * k; return a; };
  const u8 = (k) => { const a = new Uint8Array(buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + k)); at += k; return a; };
  const s = { n, ticks, m, x: f64(n), y: f64(n), angle: u8(n), steps: [] };
  for (let i = 0; i < ticks; i++) s.steps.push({ moved: u32(m), x: f64(m), y: f64(m), angle: u8(m) });
  return s;
}

function define(variant) {
  // x, y are metres; the quantized variant uses v5's t.quantized on a 32-bit wire, the
  // narrowest that keeps 0.01 m over the world (17 bits needed; fields are byte-aligned).
  const coord = variant === "map-quantized"
    ? () => t.quantized({ min: -1000, max: 1000, bits: 32 })
    : () => t.number();
  const Entity = schema({ x: coord(), y: coord(), angle: t.uint8() }, "Entity");
  const World = schema({ entities: variant === "array" ? t.array(Entity) : t.map(Entity) }, "World");
  return { Entity, World };
}

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function run(s, variant) {
  const { Entity, World } = define(variant);
  Encoder.BUFFER_SIZE = 4 * 1024 * 1024; // the whole world fits: no growth during the run
  const world = new World();
  const encoder = new Encoder(world);
  const ents = new Array(s.n);
  for (let i = 0; i < s.n; i++) {
    const e = new Entity();
    e.x = s.x[i]; e.y = s.y[i]; e.angle = s.angle[i];
    ents[i] = e;
    if (variant === "array") world.entities.push(e); else world.entities.set(String(i), e);
  }
  const full = encoder.encodeAll().slice();
  encoder.encode(); // the spawns, as the first patch after the full state
  encoder.discardChanges();
  const setters = [], encodes = [], cpu = [], bytes = [], patches = [];
  for (const step of s.steps) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const { moved, x, y, angle } = step;
    for (let k = 0; k < moved.length; k++) {
      const e = ents[moved[k]];
      e.x = x[k]; e.y = y[k]; e.angle = angle[k];
    }
    const t1 = process.hrtime.bigint();
    const patch = encoder.encode();
    const size = patch.length;
    encoder.discardChanges();
    const t2 = process.hrtime.bigint();
    const c1 = process.cpuUsage(c0);
    cpu.push((c1.user + c1.system) / 1e3); // process CPU (microsecond resolution), as ms
    setters.push(Number(t1 - t0) / 1e6);
    encodes.push(Number(t2 - t1) / 1e6);
    bytes.push(size);
    patches.push(patch.slice(0, size)); // kept for the check below, after the clock stopped
  }
  const fullEnd = encoder.encodeAll().length;
  // The patches must carry the whole change: a client that decodes them ends where we are.
  const mirror = new World();
  const decoder = new Decoder(mirror);
  decoder.decode(full);
  for (const p of patches) decoder.decode(p);
  for (let i = 0; i < s.n; i++) {
    const a = ents[i], b = variant === "array" ? mirror.entities[i] : mirror.entities.get(String(i));
    // "number" goes as float32 when that is close enough; quantized keeps 2000 m / 2^32.
    const close = variant === "map-quantized" ? (p, q) => Math.abs(p - q) < 1e-6 : (p, q) => Math.fround(p) === q;
    if (!b || !close(a.x, b.x) || !close(a.y, b.y) || a.angle !== b.angle) {
      throw new Error(`${variant}: decoded entity ${i} differs: ${JSON.stringify([a.x, a.y, a.angle])} vs ${b && JSON.stringify([b.x, b.y, b.angle])}`);
    }
  }
  const total = setters.map((v, i) => v + encodes[i]);
  const stats = (a) => { const s2 = [...a].sort((p, q) => p - q); return { median: percentile(s2, 0.5), p99: percentile(s2, 0.99), mean: a.reduce((p, q) => p + q, 0) / a.length }; };
  return {
    variant, version, node: process.version, entities: s.n, ticks: s.ticks, moving: s.m,
    full_bytes_start: full.length, full_bytes: fullEnd, verified: true,
    bytes_per_tick: stats(bytes), setters_ms: stats(setters), encode_ms: stats(encodes),
    total_ms: stats(total), total_cpu_ms: stats(cpu),
  };
}

const scenario = readScenario(scenarioPath);
for (const v of variants.length ? variants : ["map"]) {
  if (!["map", "array", "map-quantized"].includes(v)) throw new Error(`unknown variant ${v}`);
  console.log(JSON.stringify(run(scenario, v)));
}
