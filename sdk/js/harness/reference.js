// Compares the JS mirror with the Python SDK's StateMirror fed the same payloads.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { encode } from "@msgpack/msgpack";
import { PYTHON, ROOT } from "./relay.js";

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), "reference_mirror.py");

/** The mirror as plain data: live ids, values in game units and lerp(0.25), per table. */
export function dump(mirror) {
  const tables = {};
  for (const [name, table] of Object.entries(mirror.tables)) {
    const ids = table.ids;
    const values = {};
    const lerp = {};
    for (const f of table.names) {
      const v = table.values(f);
      const l = mirror.lerp(name, f, 0.25);
      values[f] = ids.map((i) => Number(v[i]));
      lerp[f] = ids.map((i) => l[i]);
    }
    tables[name] = { ids, values, lerp };
  }
  return { tick: mirror.tick, tables, doc: mirror.doc };
}

/** Each applied tick as the Python reference decoder sees it. */
export function referenceDumps(payloads) {
  const out = spawnSync(PYTHON, [SCRIPT], {
    cwd: ROOT, input: Buffer.from(encode(payloads)), encoding: "utf8", maxBuffer: 256 << 20,
  });
  if (out.status !== 0) throw new Error(`reference_mirror.py failed: ${out.stderr}`);
  return JSON.parse(out.stdout);
}
