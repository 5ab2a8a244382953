// Starts a real `stadium dev` (embedded Redis, relay with the demo page, matchmaker, leaderboard)
// and reads the URLs it prints, for the SDK's service tests and the browser tests.
import { spawn } from "node:child_process";
import { PYTHON, ROOT } from "./relay.js";

const running = new Set();
process.on("exit", () => {
  // SIGTERM, not SIGKILL: `stadium dev` stops its embedded Redis on the way out
  for (const proc of running) proc.kill("SIGTERM");
});

const LINE = (name) => new RegExp(`^\\s+${name}\\s+(\\S+)`, "m");

/** `stadium dev --port PORT ARGS...` (with `env` added to the environment: `STADIUM_*`
 * settings); resolves once it printed its URLs:
 * `{page, relay, matchmaker, leaderboard, log(), stop()}` (`relay` is the http:// address). */
export function startDev(args = [], { port = 0, timeout = 30000, env = {} } = {}) {
  const proc = spawn(PYTHON, ["-m", "stadium.cli", "dev", "--port", String(port), ...args], {
    cwd: ROOT, env: { ...process.env, PYTHONPATH: ROOT, ...env }, stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  let log = "";
  let done = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail("no URLs printed in time"), timeout);
    const fail = (why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.kill("SIGTERM");
      reject(new Error(`stadium dev did not start (${why}):\n${log}`));
    };
    const read = (chunk) => {
      log += chunk;
      if (done || !log.includes("Ctrl-C stops everything.")) return;
      done = true;
      clearTimeout(timer);
      const url = (name) => LINE(name).exec(log)?.[1]?.replace(/\/(docs|rooms\/.*)$/, "");
      const relay = url("relay").replace(/^ws/, "http");
      resolve({
        proc, relay, page: url("demo page") ?? null, matchmaker: url("matchmaker"), leaderboard: url("leaderboard"),
        log: () => log,
        stop: () => stop(proc),
      });
    };
    proc.stdout.setEncoding("utf8").on("data", read);
    proc.stderr.setEncoding("utf8").on("data", read);
    proc.once("exit", (code) => fail(`exited with ${code}`));
  });
}

function stop(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.kill("SIGKILL"), 15000);
    proc.removeAllListeners("exit");
    proc.once("exit", () => {
      clearTimeout(kill);
      running.delete(proc);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}
