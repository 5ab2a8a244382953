// The operator console: polls the relay's /console/api/ and draws what it says. Every value
// from the server goes into the page as text (room ids and player names come from clients).

const KEY_STORE = "stadium-console-key";
const HISTORY = 120; // chart samples kept: two minutes at one a second
const EVERY = { relay: 1000, rooms: 2000, nodes: 2000, room: 2000, queues: 3000, boards: 5000 };

const $ = (id) => document.getElementById(id);

/** What the page knows; the browser test reads it. */
const view = {
  access: null, relay: null, nodes: null, rooms: null, room: null, queues: null, boards: null,
  selected: null, samples: [], errors: [], needKey: false,
};
window.stadiumConsole = view;

class NeedKey extends Error {}

function noteError(text) {
  view.errors.push(text);
  if (view.errors.length > 20) view.errors.shift();
}

async function api(path) {
  const key = sessionStorage.getItem(KEY_STORE);
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const res = await fetch(`/console/api/${path}`, { headers, cache: "no-store" });
  if (res.status === 401) throw new NeedKey();
  const body = await res.json();
  if (!res.ok) throw new Error(body.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function banner(text) {
  const el = $("banner");
  el.hidden = !text;
  el.textContent = text ?? "";
}

function askForKey() {
  view.needKey = true;
  $("key-form").hidden = false;
  $("access").textContent = "locked";
  $("access").className = "status closed";
  banner("This relay's console needs the operator key (--admin-key).");
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key").value);
  $("key").value = "";
  $("key-form").hidden = true;
  view.needKey = false;
  banner(null);
  for (const name of Object.keys(EVERY)) poll(name, true);
});

// --- drawing helpers ------------------------------------------------------------------------
function cell(value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "–" : String(value);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, empty) {
  const body = $(tableId).tBodies[0];
  const trs = rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) tr.append(c instanceof Node ? c : cell(c));
    return tr;
  });
  if (!trs.length) {
    const tr = document.createElement("tr");
    const td = cell(empty, "note");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    tr.append(td);
    trs.push(tr);
  }
  body.replaceChildren(...trs);
  return trs;
}

const num = (n, digits = 0) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits));
const ago = (t) => `${Math.max(0, Math.round(Date.now() / 1000 - t))} s ago`;

/** The smallest 1, 2 or 5 times a power of ten at or above `n`: a round top for a chart. */
function roundUp(n) {
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((k) => k * p).find((v) => v >= n);
}

function drawChart(svgId, series) {
  const svg = $(svgId);
  const w = 400;
  const h = 120;
  const max = roundUp(Math.max(1, ...series.flatMap((s) => s.values)) * 1.1);
  const parts = [];
  for (const frac of [0.25, 0.5, 0.75]) {
    parts.push(`<line class="grid" x1="0" x2="${w}" y1="${h * frac}" y2="${h * frac}"/>`);
  }
  for (const s of series) {
    const n = s.values.length;
    if (n < 2) continue;
    // the samples so far fill the width; once HISTORY are in, the chart scrolls
    const pts = s.values.map((v, i) => `${(i / (n - 1)) * w},${h - 2 - (v / max) * (h - 4)}`);
    parts.push(`<polyline class="${s.cls}" points="${pts.join(" ")}"/>`);
  }
  svg.innerHTML = parts.join(""); // numbers only: nothing from a client goes in here
  svg.dataset.max = String(max);
  svg.parentElement.querySelector(".max").textContent = `scale 0–${max}`;
}

// --- each view ------------------------------------------------------------------------------
const render = {
  relay(r) {
    view.access = r.console;
    $("relay").textContent = `${r.url} · node ${r.node} · pid ${r.pid} · ${r.version}`;
    $("access").textContent = r.draining ? "draining" : r.console === "open" ? "open (stadium dev)" : "operator key";
    $("access").className = `status ${r.draining ? "closed" : r.console === "open" ? "connecting" : "open"}`;
    const last = view.samples[view.samples.length - 1];
    const sample = { time: r.time, connections: r.connections, in: 0, out: 0, raw: r };
    if (last) {
      const dt = Math.max(0.001, r.time - last.time);
      sample.in = Math.max(0, (r.messages_in - last.raw.messages_in) / dt);
      sample.out = Math.max(0, (r.messages_out - last.raw.messages_out) / dt);
    }
    view.samples.push(sample);
    if (view.samples.length > HISTORY) view.samples.shift();
    const rates = view.samples.slice(1);
    $("now-connections").textContent = r.connections;
    $("now-in").textContent = num(sample.in);
    $("now-out").textContent = num(sample.out);
    drawChart("chart-connections", [{ cls: "conn", values: view.samples.map((s) => s.connections) }]);
    drawChart("chart-messages", [{ cls: "in", values: rates.map((s) => s.in) }, { cls: "out", values: rates.map((s) => s.out) }]);
    const totals = [["rooms awake", r.rooms], ["hibernated", r.rooms_hibernated], ["handler errors", r.handler_errors],
      ["rate-limit drops", r.rate_limit_drops], ["hibernations", r.hibernations], ["wakes", r.wakes],
      ["closes", Object.entries(r.closes).map(([c, n]) => `${c}×${n}`).join(" ") || "none"]];
    $("totals").replaceChildren(...totals.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = String(v);
      return [dt, dd];
    }));
    fill("ticks", Object.entries(r.ticks).map(([type, t]) => [type, t.ticks, num(t.mean_ms, 3), num(t.p99_ms, 3), t.overruns]),
      "no ticking rooms yet");
  },

  nodes(n) {
    $("nodes-note").textContent = n.directory ? `(${n.nodes.length} in the relay directory)` : "(no Redis: this relay only)";
    fill("nodes", n.nodes.map((e) => [e.self ? `${e.url} (this one)` : e.url, e.load,
      e.expires_in === null ? "–" : e.expires_in < 0 ? "expired" : `${num(e.expires_in, 1)} s`]), "no relay registered");
  },

  rooms(r) {
    $("rooms-note").textContent = `(${r.count} on this relay${r.more ? `, ${r.more} more not listed` : ""})`;
    const trs = fill("rooms", r.rooms.map((x) => [x.type, x.id, x.awake ? "awake" : "hibernated", x.members,
      x.tick_rate ? `${x.tick} @ ${x.tick_rate} Hz` : "–", num(x.tick_ms, 3), x.overruns, x.recent_closes]), "no rooms");
    r.rooms.forEach((x, i) => {
      const tr = trs[i];
      tr.className = "pick";
      if (view.selected && view.selected.type === x.type && view.selected.id === x.id) tr.classList.add("selected");
      tr.addEventListener("click", () => select(x.type, x.id));
    });
  },

  room(x) {
    $("room-panel").hidden = false;
    $("room-name").textContent = `${x.type}/${x.id}`;
    $("room-note").textContent = `(${x.awake ? "awake" : "hibernated"}, ${x.members} members${x.more ? `, ${x.more} not listed` : ""}, seats: ${x.seats})`;
    fill("members", x.members_listed.map((m) => [m.id, m.player, m.ip, m.kind, m.tags.join(", "), m.slow ? "slow" : m.open ? "open" : "closing"]),
      "no members");
    fill("closes", x.closes.map((c) => [ago(c.at), c.member, c.player, c.code]), "no closes yet");
  },

  queues(q) {
    $("queues-note").textContent = q.url ? `(${q.url})` : "(no --matchmaker-url)";
    if (q.error) noteError(q.error);
    fill("queues", q.queues.map((x) => [x.name, `${Array(x.teams).fill(x.team_size).join("v")}`, x.room_type, x.waiting, x.matches,
      [x.wait_seconds.p50, x.wait_seconds.p90, x.wait_seconds.p99].map((v) => num(v, 1)).join(" / "),
      num(x.quality.rating_spread_mean, 2), x.quality.favourite_win_mean === null ? "–" : `${num(x.quality.favourite_win_mean * 100)} %`]),
    q.error ?? "no queues");
  },

  boards(b) {
    $("boards-note").textContent = b.url ? `(${b.url}${b.more ? `; ${b.count - b.boards.length} more not listed` : ""})` : "(no --leaderboard-url)";
    if (b.error) noteError(b.error);
    fill("boards", b.boards.map((x) => [x.board, x.order, x.operator, x.periods.join(", ") || "all-time",
      x.entries, (x.top ?? []).map((e) => `${e.player} ${e.score}`).join(" · ")]), b.error ?? "no boards");
  },
};

function select(type, id) {
  view.selected = { type, id };
  view.room = null;
  history.replaceState(null, "", `#room=${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
  for (const tr of $("rooms").tBodies[0].rows) tr.classList.remove("selected");
  poll("room", true);
}

const paths = {
  relay: () => "relay", nodes: () => "nodes", rooms: () => "rooms", queues: () => "queues", boards: () => "boards",
  room: () => (view.selected ? `rooms/${encodeURIComponent(view.selected.type)}/${encodeURIComponent(view.selected.id)}` : null),
};
const timers = {};

async function poll(name, now = false) {
  clearTimeout(timers[name]);
  if (!now) return;
  const path = paths[name]();
  if (path && !view.needKey) {
    try {
      const value = await api(path);
      view[name] = value;
      render[name](value);
      if (name === "relay") banner(null);
    } catch (e) {
      if (e instanceof NeedKey) askForKey();
      else if (name === "room") {
        $("room-note").textContent = `(${e.message})`;
      } else {
        noteError(`${name}: ${e.message}`);
        if (name === "relay") banner(`The relay did not answer: ${e.message}`);
      }
    }
  }
  timers[name] = setTimeout(() => poll(name, true), EVERY[name]);
}

const picked = /^#room=([^/]+)\/(.+)$/.exec(location.hash);
if (picked) view.selected = { type: decodeURIComponent(picked[1]), id: decodeURIComponent(picked[2]) };
for (const name of Object.keys(EVERY)) poll(name, true);
