// Starts a real `stadium relay` process for the tests, as loadtest/processes.py does.
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const PYTHON = path.join(ROOT, ".venv", "bin", "python");
const LISTENING = /listening on (\w+):\/\/([^:/\s]+):(\d+)/;
const running = new Set();

process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});

/** `stadium relay --port PORT ARGS...`; resolves once it logs the address it listens on. */
export function startRelay(args = [], { port = 0, timeout = 20000 } = {}) {
  const proc = spawn(PYTHON, ["-m", "stadium.cli", "relay", "--port", String(port), ...args], {
    cwd: ROOT, env: { ...process.env, PYTHONPATH: ROOT }, stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail("no 'listening on' line in time"), timeout);
    const fail = (why) => {
      clearTimeout(timer);
      proc.kill("SIGKILL");
      reject(new Error(`stadium relay did not start (${why}):\n${log}`));
    };
    const read = (chunk) => {
      log += chunk;
      const m = LISTENING.exec(log);
      if (m && timer) {
        clearTimeout(timer);
        const [, scheme, host, p] = m;
        resolve(new RelayProcess(proc, () => log, Number(p), `http://${host}:${p}`, `${scheme}://${host}:${p}`));
      }
    };
    proc.stdout.setEncoding("utf8").on("data", read);
    proc.stderr.setEncoding("utf8").on("data", read);
    proc.once("exit", (code) => fail(`exited with ${code}`));
  });
}

class RelayProcess {
  constructor(proc, log, port, http, url) {
    Object.assign(this, { proc, port, http, url });
    this.log = log;
  }

  /** SIGTERM: the relay drains (closes every socket with 1001), then exits. */
  stop(signal = "SIGTERM") {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const kill = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
      this.proc.removeAllListeners("exit");
      this.proc.once("exit", () => {
        clearTimeout(kill);
        running.delete(this.proc);
        resolve();
      });
      this.proc.kill(signal);
    });
  }
}

/** A join token signed the way the relay checks it, from the `stadium token` command. */
export function signToken(secret, room, player) {
  const out = spawnSync(PYTHON, ["-m", "stadium.cli", "token", "--secret", secret, "--room", room,
    "--player", player], { cwd: ROOT, env: { ...process.env, PYTHONPATH: ROOT }, encoding: "utf8" });
  if (out.status !== 0) throw new Error(`stadium token failed: ${out.stderr}`);
  return out.stdout.trim();
}

/** Resolves with the arguments of the next `event` on `room` (rejects after `ms`). */
export function next(room, event, ms = 10000, filter = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event within ${ms} ms`));
    }, ms);
    const off = room.on(event, (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args.length > 1 ? args : args[0]);
    });
  });
}

/** Resolves once `predicate()` holds after a "state" event. */
export function untilState(room, predicate, ms = 10000) {
  if (room.state.tick && predicate()) return Promise.resolve(room.state);
  return next(room, "state", ms, () => predicate());
}
