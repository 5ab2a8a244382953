// The arena demo: quick-join or matchmake, draw the state mirror with interpolation, steer with
// the keyboard, show the leaderboard and the relay's live numbers. `window.stadiumDemo` exposes
// the room and what was drawn, for people poking at it in the console and for the browser tests.
import { Client, LeaderboardError, MatchmakerError, unpack } from "/sdk/index.js";

const TICK_MS = 50; // the arena room ticks at 20 Hz
const BOARD_EVERY = 3000; // ms between two leaderboard reads
const METRICS_EVERY = 1000; // ms between two /metrics reads
const ROOM_TYPE = "arena";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const canvas = $("arena");
const ctx = canvas.getContext("2d");

const demo = {
  status: "loading", room: null, seat: null, ship: null, name: null, client: null, config: null,
  errors: [], banner: "", board: [], metrics: {}, drawnShips: [], frames: 0,
};
window.stadiumDemo = demo;

// --- messages on the page ---------------------------------------------------------------
function banner(text, kind = "error") {
  const el = $("banner");
  demo.banner = text;
  el.textContent = text;
  el.className = `banner ${kind}`;
  el.hidden = !text;
}

function setStatus(status, text = status) {
  demo.status = status;
  const el = $("status");
  el.textContent = text;
  el.className = `status ${status}`;
}

function explain(e) {
  switch (e.name) {
    case "TokenRefusedError":
      return `The relay refused the join token (${e.code}): ${e.message}. Ask the matchmaker for a seat ` +
        "(Find match) or open the page with a valid ?token=.";
    case "JoinRefusedError":
      return `The relay refused the join (${e.code}): ${e.message}`;
    case "RelayUnreachableError":
      return `The relay is down or unreachable: ${e.message}. Retrying…`;
    case "MessageTooLargeError":
      return `A message was over the relay's size limit and the relay closed the socket (1009). Reconnecting…`;
    case "SendBufferFullError":
      return `Offline for too long: an input was dropped (${e.message}).`;
    default:
      return `${e.name} (${e.code}): ${e.message}`;
  }
}

// --- joining ------------------------------------------------------------------------------
function serviceUrl(url) {
  if (!url) return undefined;
  const u = new URL(url);
  // a service bound to every address is reached at the host this page came from
  if (u.hostname === "0.0.0.0" || u.hostname === "[::]") u.hostname = location.hostname;
  return u.origin;
}

async function loadConfig() {
  try {
    const res = await fetch("/demo/config.json");
    return res.ok ? await res.json() : {};
  } catch {
    return {};
  }
}

async function leaveRoom() {
  const room = demo.room;
  demo.room = null;
  demo.ship = null;
  if (room && room.status !== "closed") await room.leave();
}

function attach(room) {
  demo.room = room;
  setStatus("connecting", "connecting…");
  room.on("message", (data) => {
    if (typeof data === "string") return;
    const msg = unpack(data);
    if (msg && typeof msg === "object" && "ship" in msg) {
      demo.ship = msg.ship;
      sendSteering(true); // a new ship (first join, or a new relay after a reconnect) starts still
    }
  });
  room.on("state", () => {
    demo.lastStateAt = performance.now();
  });
  room.on("join", () => {
    setStatus("open", "playing");
    banner("");
  });
  room.on("reconnecting", (ev) => {
    setStatus("reconnecting", `reconnecting (attempt ${ev.attempt})…`);
    const why = ev.error ? explain(ev.error) : `the connection closed (${ev.code ?? "lost"}${ev.reason ? `: ${ev.reason}` : ""})`;
    banner(`${why} Next try in ${ev.delay} ms.`, "info");
  });
  room.on("reconnected", () => {
    setStatus("open", "playing");
    banner("");
    sendSteering(true);
  });
  room.on("error", (e) => {
    demo.errors.push({ name: e.name, code: e.code, message: e.message });
    banner(explain(e), e.final === false || e.name === "MessageTooLargeError" ? "info" : "error");
  });
  room.on("close", (ev) => {
    if (demo.room !== room) return;
    setStatus("closed", "disconnected");
    const why = ev.error ? explain(ev.error) : `the relay closed the room (${ev.code ?? "no code"}${ev.reason ? `: ${ev.reason}` : ""})`;
    banner(`Disconnected: ${why}`);
  });
}

async function quickJoin() {
  await leaveRoom();
  demo.seat = null;
  const id = params.get("room") || "lobby";
  $("who").textContent = `${demo.name} in ${ROOM_TYPE}/${id}`;
  attach(demo.client.joinRoom(ROOM_TYPE, id, params.get("token"), { query: { name: demo.name } }));
}

// A game's own backend mints the player token after its login; `stadium dev` stands in for it
// with a dev-only endpoint of the matchmaker (null token: the matchmaker checks none).
async function playerToken(player) {
  try {
    const res = await fetch(`${demo.client.matchmakerUrl}/dev/player-token`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ player }),
    });
    return res.ok ? (await res.json()).token ?? null : null;
  } catch {
    return null;
  }
}

async function findMatch() {
  await leaveRoom();
  const queue = demo.config.queue;
  setStatus("connecting", `matchmaking in ${queue}…`);
  banner(`Waiting for another player in queue ${queue} (open a second tab and press Find match there).`, "info");
  let token;
  try {
    token = await playerToken(demo.name);
    demo.seat = await demo.client.matchmake(queue, { player: demo.name, token, timeout: 120000 });
  } catch (e) {
    setStatus("closed", "no match");
    const where = e instanceof MatchmakerError && e.code === "unreachable"
      ? `the matchmaker is not reachable at ${demo.client.matchmakerUrl}` : e.message;
    banner(`Matchmaking failed: ${where}. Quick join still works.`);
    return;
  }
  $("who").textContent = `${demo.name} in ${demo.seat.room_type}/${demo.seat.room_id}`;
  // the name shows when the relay has no secret (with one, the token's player names the ship)
  // with the player token, a reconnect after the seat's token expired gets a fresh one
  attach(demo.client.join(demo.seat, { playerToken: token, query: { name: demo.name } }));
}

// --- steering -----------------------------------------------------------------------------
const KEYS = {
  ArrowLeft: "left", KeyA: "left", ArrowRight: "right", KeyD: "right", ArrowUp: "thrust", KeyW: "thrust",
};
const held = new Set();
let sent = null;

function sendSteering(force = false) {
  const room = demo.room;
  if (!room || room.status === "closed") return;
  const turn = (held.has("right") ? 1 : 0) - (held.has("left") ? 1 : 0);
  const thrust = held.has("thrust") ? 1 : 0;
  const key = `${turn},${thrust}`;
  if (!force && key === sent) return;
  sent = key;
  room.send({ turn, thrust });
}

function onKey(down) {
  return (ev) => {
    const what = KEYS[ev.code];
    if (!what) return;
    ev.preventDefault();
    if (down) held.add(what);
    else held.delete(what);
    sendSteering();
  };
}
window.addEventListener("keydown", onKey(true));
window.addEventListener("keyup", onKey(false));
window.addEventListener("blur", () => {
  held.clear();
  sendSteering();
});

// --- drawing ------------------------------------------------------------------------------
function draw(now) {
  requestAnimationFrame(draw);
  const w = canvas.width;
  ctx.fillStyle = "#05070a";
  ctx.fillRect(0, 0, w, canvas.height);
  const state = demo.room?.state;
  if (!state || !state.tick || !state.tables.ships) {
    ctx.fillStyle = "#8b949e";
    ctx.font = "16px system-ui";
    ctx.fillText(demo.status === "closed" ? "not connected" : "waiting for the room…", 20, 30);
    demo.drawnShips = [];
    return;
  }
  const world = Number(state.doc.world) || 100;
  const scale = w / world;
  const alpha = Math.min(1, Math.max(0, (now - (demo.lastStateAt ?? now)) / TICK_MS));
  if (state.tables.coins) {
    const coins = state.table("coins");
    const cx = coins.values("x"), cy = coins.values("y");
    ctx.fillStyle = "#e3b341";
    for (const id of coins.ids) {
      ctx.beginPath();
      ctx.arc(cx[id] * scale, cy[id] * scale, 4, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  const ships = state.table("ships");
  const x = state.lerp("ships", "x", alpha), y = state.lerp("ships", "y", alpha);
  const angle = state.lerp("ships", "angle", alpha);
  const nowX = ships.values("x"), nowY = ships.values("y");
  const hue = ships.values("hue");
  const players = state.doc.players ?? {};
  const drawn = [];
  for (const id of ships.ids) {
    // across the world's wrapping edge, interpolating would sweep over the whole map
    const sx = (Math.abs(x[id] - nowX[id]) > world / 4 ? nowX[id] : x[id]) * scale;
    const sy = (Math.abs(y[id] - nowY[id]) > world / 4 ? nowY[id] : y[id]) * scale;
    ctx.save();
    ctx.translate(sx, sy);
    ctx.rotate(angle[id]);
    ctx.beginPath();
    ctx.moveTo(16, 0);
    ctx.lineTo(-10, 9);
    ctx.lineTo(-5, 0);
    ctx.lineTo(-10, -9);
    ctx.closePath();
    ctx.fillStyle = `hsl(${Math.round((hue[id] * 360) / 256)}, 80%, 60%)`;
    ctx.fill();
    if (id === demo.ship) {
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    ctx.restore();
    ctx.fillStyle = id === demo.ship ? "#ffffff" : "#b1bac4";
    ctx.font = "12px system-ui";
    ctx.fillText(`${players[String(id)] ?? id} ${ships.values("score")[id]}`, sx + 10, sy - 10);
    drawn.push({ id, x: sx, y: sy });
  }
  demo.drawnShips = drawn;
  demo.frames += 1;
}

// --- leaderboard and live panel ---------------------------------------------------------
async function refreshBoard() {
  const note = $("board-note");
  if (!demo.config.leaderboard) {
    note.textContent = "No leaderboard service for this relay (stadium dev runs one).";
    return;
  }
  try {
    const page = await demo.client.leaderboard("arena").top(10);
    demo.board = page.entries;
    const list = $("board");
    list.replaceChildren(...page.entries.map((e) => {
      const li = document.createElement("li");
      li.textContent = `${e.player} — ${e.score}`;
      if (e.player === demo.name) li.className = "me";
      return li;
    }));
    note.textContent = page.entries.length ? "" : "No scores yet.";
  } catch (e) {
    if (e instanceof LeaderboardError && e.code === "unknown_board") {
      note.textContent = "No scores yet: the arena posts them every 5 s once someone has a coin.";
    } else {
      note.textContent = `Leaderboard unavailable: ${e.message}`;
    }
  }
}

const METRIC = (name) => new RegExp(`^${name} ([0-9.e+-]+)$`, "m");
let lastCounts = null;

async function refreshMetrics() {
  let text;
  try {
    const res = await fetch("/metrics");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    text = await res.text();
  } catch {
    for (const id of ["m-connections", "m-rooms", "m-in", "m-out"]) $(id).textContent = "–";
    lastCounts = null;
    return;
  }
  const read = (name) => Number(METRIC(name).exec(text)?.[1] ?? NaN);
  const counts = { at: performance.now(), in: read("stadium_relay_messages_in_total"),
    out: read("stadium_relay_messages_out_total") };
  const m = { connections: read("stadium_relay_connections"), rooms: read("stadium_relay_rooms") };
  if (lastCounts) {
    const dt = (counts.at - lastCounts.at) / 1000;
    m.inPerSecond = Math.max(0, (counts.in - lastCounts.in) / dt);
    m.outPerSecond = Math.max(0, (counts.out - lastCounts.out) / dt);
  }
  lastCounts = counts;
  demo.metrics = m;
  $("m-connections").textContent = m.connections;
  $("m-rooms").textContent = m.rooms;
  $("m-in").textContent = m.inPerSecond === undefined ? "…" : m.inPerSecond.toFixed(0);
  $("m-out").textContent = m.outPerSecond === undefined ? "…" : m.outPerSecond.toFixed(0);
}

// --- start --------------------------------------------------------------------------------
async function start() {
  demo.config = await loadConfig();
  demo.name = (params.get("name") || `pilot-${Math.random().toString(36).slice(2, 7)}`).slice(0, 32);
  demo.client = new Client(location.origin, {
    matchmakerUrl: serviceUrl(demo.config.matchmaker),
    leaderboardUrl: serviceUrl(demo.config.leaderboard),
    maxRetries: 30, // a developer restarting `stadium dev` should find the page playing again
    maxDelay: 2000,
  });
  const canMatch = Boolean(demo.config.matchmaker && demo.config.queue);
  $("match").hidden = !canMatch;
  $("quick").addEventListener("click", () => quickJoin());
  $("match").addEventListener("click", () => findMatch());
  canvas.focus();
  requestAnimationFrame(draw);
  refreshBoard();
  setInterval(refreshBoard, BOARD_EVERY);
  refreshMetrics();
  setInterval(refreshMetrics, METRICS_EVERY);
  if (params.get("mode") === "match" && canMatch) await findMatch();
  else await quickJoin();
}

start().catch((e) => {
  setStatus("closed", "failed");
  banner(`The demo could not start: ${e.message}`);
});
