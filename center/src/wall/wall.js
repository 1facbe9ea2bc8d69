// lookout video wall: live tiles (WebCodecs), alert-driven layout, alert
// panel with acknowledgement and evidence clips, and a map drawn from the
// cameras' positions.
// Served by `lookout center`; talks only to it (wall.rs describes the live
// video format; /api/events pushes ledger changes and camera states).
"use strict";

const SEVERITY = { critical: 4, high: 3, warning: 2, info: 1 };
const STALE_MS = 3000;
const BIG_SLOTS = 4;

// Everything the page knows; `window.lookoutWall` lets tests read it.
const wall = {
  cameras: new Map(), // key "gateway/camera" -> camera record from the API
  alerts: new Map(), // alertKey(record) -> ledger record
  // Alert ids are the gateways' own: two gateways may use the same one, so an
  // alert is known by both (JSON, so no separator can be confused with an id).
  alertKey: (a) => JSON.stringify([a.gateway, a.id]),
  tiles: new Map(), // key -> tile state
  // Evidence clips the operator opened: alertKey -> <video>. The element is
  // kept across the alert list's re-rendering, so a new alert arriving does
  // not stop a clip being watched.
  clips: new Map(),
  connected: false,
  errors: [],
  leaving: false, // the session ended and the page is going to the sign-in form
};
window.lookoutWall = wall;
// Errors no handler caught (a bug in this page) are kept apart from the
// expected ones above, so the wall's browser test can fail on them.
window.addEventListener("error", (e) => wall.errors.push(`uncaught: ${e.message} (${e.filename}:${e.lineno})`));
window.addEventListener("unhandledrejection", (e) => wall.errors.push(`uncaught: ${e.reason}`));

const $ = (id) => document.getElementById(id);
const key = (c) => `${c.gateway}/${c.id}`;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
// The API path of one gateway's alert.
const alertPath = (gateway, id) =>
  `/api/gateways/${encodeURIComponent(gateway)}/alerts/${encodeURIComponent(id)}`;

// A sign-in that ended (signed out on another tab, idle or too old: the
// center keeps sessions, see sessions.rs) makes the API answer 401; the
// page then goes back to `/`, which shows the sign-in form.
function signedOut(resp) {
  if (resp.status !== 401) return false;
  if (!wall.leaving) {
    wall.leaving = true;
    location.assign("/");
  }
  return true;
}

function activeAlertFor(k) {
  let best = null;
  for (const a of wall.alerts.values()) {
    const cam = a.alert && a.alert.camera ? a.alert.camera.id : a.camera;
    if (`${a.gateway}/${cam}` !== k || a.state !== "active") continue;
    if (!best || rank(a) > rank(best)) best = a;
  }
  return best;
}

function rank(a) {
  return (SEVERITY[a.severity] || 0) * 1e15 + (a.received_unix_ms || 0);
}

// ---------------------------------------------------------------- tiles

function makeTile(cam) {
  const k = key(cam);
  const el = document.createElement("div");
  el.className = "tile";
  el.dataset.key = k;
  el.innerHTML = `<canvas class="video" width="640" height="360"></canvas>
    <canvas class="boxes" width="640" height="360"></canvas>
    <div class="head"><span class="name"></span><span class="kind"></span><span class="age"></span></div>
    <div class="state"></div><div class="alert-tag"></div>`;
  const t = {
    key: k,
    el,
    video: el.querySelector("canvas.video"),
    boxes: el.querySelector("canvas.boxes"),
    frames: 0, // frames decoded and drawn
    lastFrameAt: 0,
    decoder: null,
    note: "",
  };
  wall.tiles.set(k, t);
  return t;
}

// All tiles' video comes on one response (browsers keep only six HTTP/1.1
// connections per server); it is restarted when the set of tiles changes.
const live = { keys: [], abort: null };

function restartLive() {
  const keys = [...wall.tiles.keys()].sort();
  if (keys.join(",") === live.keys.join(",") && live.abort) return;
  if (live.abort) live.abort.abort();
  live.keys = keys;
  live.abort = null;
  for (const t of wall.tiles.values()) {
    if (t.decoder && t.decoder.state !== "closed") t.decoder.close();
    t.decoder = null;
    t.codec = null;
  }
  if (!keys.length || !("VideoDecoder" in window)) {
    for (const t of wall.tiles.values()) t.note = "no WebCodecs in this browser";
    return;
  }
  readLive(keys);
}

async function readLive(keys) {
  const ctrl = new AbortController();
  live.abort = ctrl;
  const url = `/api/live?cameras=${keys.map(encodeURIComponent).join(",")}`;
  try {
    const resp = await fetch(url, { signal: ctrl.signal, cache: "no-store" });
    if (signedOut(resp)) return;
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const reader = resp.body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf);
      joined.set(value, buf.length);
      buf = joined;
      let at = 0;
      while (buf.length - at >= 4) {
        const len = new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0);
        if (buf.length - at - 4 < len) break;
        const msg = buf.subarray(at + 4, at + 4 + len);
        const index = new DataView(msg.buffer, msg.byteOffset + 1, 2).getUint16(0);
        const t = wall.tiles.get(keys[index]);
        if (t) handleMessage(t, msg[0], msg.subarray(3));
        at += 4 + len;
      }
      buf = buf.slice(at);
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
    wall.errors.push(`live: ${e}`);
  }
  // The stream ended (center restart, a camera gone): start again shortly.
  if (!ctrl.signal.aborted) {
    live.abort = null;
    live.keys = [];
    setTimeout(restartLive, 1000);
  }
}

function handleMessage(t, kind, msg) {
  if (kind === 1) {
    const cfg = JSON.parse(new TextDecoder().decode(msg));
    configure(t, cfg);
  } else if (kind === 2 && t.decoder && t.decoder.state === "configured") {
    const dv = new DataView(msg.buffer, msg.byteOffset, 17);
    const keyframe = (dv.getUint8(0) & 1) === 1;
    const captureNs = dv.getBigUint64(1);
    if (!keyframe && t.needKey) return;
    t.needKey = false;
    try {
      t.decoder.decode(new EncodedVideoChunk({
        type: keyframe ? "key" : "delta",
        timestamp: Number(captureNs / 1000n),
        data: msg.subarray(17),
      }));
    } catch (e) {
      wall.errors.push(`${t.key}: decode: ${e}`);
      t.needKey = true;
    }
  }
}

async function configure(t, cfg) {
  const config = { codec: cfg.codec, optimizeForLatency: true };
  if (t.decoder && t.decoder.state !== "closed" && t.codec === cfg.codec) return;
  let supported = false;
  try {
    supported = (await VideoDecoder.isConfigSupported(config)).supported;
  } catch (e) {
    supported = false;
  }
  if (!supported) {
    t.note = cfg.h265 ? "H.265: this browser has no decoder" : `cannot decode ${cfg.codec}`;
    t.el.classList.add("nodecoder");
    return;
  }
  if (t.decoder && t.decoder.state !== "closed") t.decoder.close();
  t.video.width = cfg.width;
  t.video.height = cfg.height;
  t.boxes.width = cfg.width;
  t.boxes.height = cfg.height;
  const ctx = t.video.getContext("2d");
  t.decoder = new VideoDecoder({
    output: (frame) => {
      ctx.drawImage(frame, 0, 0, t.video.width, t.video.height);
      frame.close();
      t.frames += 1;
      t.lastFrameAt = performance.now();
    },
    error: (e) => {
      wall.errors.push(`${t.key}: decoder: ${e}`);
      t.decoder = null;
      t.codec = null;
    },
  });
  t.decoder.configure(config);
  t.codec = cfg.codec;
  t.needKey = true;
}

function drawBoxes(t, alert) {
  const ctx = t.boxes.getContext("2d");
  ctx.clearRect(0, 0, t.boxes.width, t.boxes.height);
  if (!alert || !alert.alert) return;
  const a = alert.alert;
  const fw = (a.frame && a.frame.width) || t.boxes.width;
  const fh = (a.frame && a.frame.height) || t.boxes.height;
  const sx = t.boxes.width / fw;
  const sy = t.boxes.height / fh;
  ctx.lineWidth = Math.max(2, t.boxes.width / 200);
  ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue(`--${alert.severity}`) || "#f85149";
  ctx.font = `${Math.max(12, t.boxes.width / 40)}px system-ui`;
  ctx.fillStyle = ctx.strokeStyle;
  for (const [x, y, w, h] of a.boxes || []) {
    ctx.strokeRect(x * sx, y * sy, w * sx, h * sy);
    ctx.fillText(`${a.label} ${(a.score * 100).toFixed(0)}%`, x * sx + 3, Math.max(12, y * sy - 4));
  }
}

function renderTiles() {
  const box = $("tiles");
  const filter = $("filter").value;
  const cams = [...wall.cameras.values()];
  // Alerting cameras first, by severity then recency; the rest by name.
  const withAlert = cams.map((c) => ({ c, a: activeAlertFor(key(c)) }));
  withAlert.sort((x, y) => {
    if (x.a && y.a) return rank(y.a) - rank(x.a);
    if (x.a) return -1;
    if (y.a) return 1;
    return key(x.c).localeCompare(key(y.c));
  });
  let big = 0;
  const shown = new Set();
  for (const { c, a } of withAlert) {
    const k = key(c);
    const want = filter === "all" || (filter === "alerting" && a) ||
      (filter.startsWith("group:") && (c.group || c.gateway) === filter.slice(6));
    let t = wall.tiles.get(k);
    if (!want) {
      if (t) {
        t.el.remove();
        if (t.decoder && t.decoder.state !== "closed") t.decoder.close();
      }
      continue;
    }
    if (!t) t = makeTile(c);
    shown.add(k);
    box.appendChild(t.el); // keeps the sorted order
    t.el.querySelector(".name").textContent = c.name || c.id;
    t.el.querySelector(".kind").textContent = `${c.kind} · ${c.gateway}`;
    for (const s of Object.keys(SEVERITY)) t.el.classList.remove(`sev-${s}`);
    t.el.classList.toggle("alerting", !!a);
    t.el.classList.toggle("big", !!a && big < BIG_SLOTS);
    if (a) {
      big += 1;
      t.el.classList.add(`sev-${a.severity}`);
      const tag = t.el.querySelector(".alert-tag");
      tag.textContent = `${a.label} · ${a.severity}`;
      tag.style.background = `var(--${a.severity})`;
    }
    drawBoxes(t, a);
  }
  for (const [k, t] of wall.tiles) {
    if (!shown.has(k)) wall.tiles.delete(k);
  }
  restartLive();
  updateAges();
}

function updateAges() {
  const now = performance.now();
  for (const t of wall.tiles.values()) {
    const cam = wall.cameras.get(t.key);
    const state = t.el.querySelector(".state");
    const age = t.el.querySelector(".age");
    const camState = cam ? cam.state : "offline";
    const offline = camState !== "live";
    const since = t.lastFrameAt ? now - t.lastFrameAt : Infinity;
    t.el.classList.toggle("offline", offline);
    t.el.classList.toggle("stale", !offline && since > STALE_MS && !t.note);
    if (offline) {
      state.textContent = camState === "offline" ? "offline" : `offline (${camState})`;
      age.textContent = "";
    } else if (t.note) {
      state.textContent = t.note;
      age.textContent = "";
    } else if (since > STALE_MS) {
      state.textContent = t.lastFrameAt ? `stale ${Math.round(since / 1000)} s` : "waiting for a keyframe";
      age.textContent = "";
    } else {
      age.textContent = `live · ${t.frames}`;
    }
  }
  $("clock").textContent = new Date().toLocaleTimeString();
}

// ---------------------------------------------------------------- alerts

function renderAlerts() {
  const list = [...wall.alerts.values()].sort((a, b) => {
    const active = (b.state === "active") - (a.state === "active");
    return active || rank(b) - rank(a);
  });
  $("alert-count").textContent = `(${list.filter((a) => a.state === "active").length} active)`;
  const ol = $("alerts");
  ol.innerHTML = "";
  const now = Date.now();
  const shown = new Set();
  for (const a of list.slice(0, 100)) {
    const k = wall.alertKey(a);
    shown.add(k);
    const rec = a.alert || {};
    const cam = rec.camera || {};
    const li = document.createElement("li");
    li.className = `sev-${a.severity} ${a.state || ""}`;
    li.dataset.id = a.id;
    li.dataset.gateway = a.gateway;
    const loc = cam.location ? `${cam.location.lat.toFixed(3)}, ${cam.location.lon.toFixed(3)}` : "";
    const ageS = Math.max(0, Math.round((now - (a.received_unix_ms || now)) / 1000));
    li.innerHTML = `<img alt="snapshot" src="${a.has_snapshot ? esc(`${alertPath(a.gateway, a.id)}/snapshot.jpg`) : ""}">
      <div><div class="what">${esc(a.label)} · ${esc(a.severity)} · ${((rec.score || 0) * 100).toFixed(0)}%</div>
      <div class="meta">${esc(cam.name || cam.id || a.camera)} (${esc(a.gateway)}) ${esc(loc)}</div>
      <div class="meta">${esc(a.state)} · ${ageS} s ago</div>
      ${a.acked_by ? `<div class="acked">acknowledged by ${esc(a.acked_by)}</div>`
        : `<button class="ack" data-gateway="${esc(a.gateway)}" data-id="${esc(a.id)}">Acknowledge</button>`}
      ${clipControls(a, k)}</div>`;
    ol.appendChild(li);
    const video = wall.clips.get(k);
    if (video && a.clip) li.appendChild(video);
  }
  // Clips of alerts no longer listed, or whose clip is gone, are closed.
  for (const [k, video] of wall.clips) {
    const a = wall.alerts.get(k);
    if (!shown.has(k) || !a || !a.clip) closeClip(k, video);
  }
}

// The clip button and download link of an alert that has a clip
// (`"clip": {"url", "bytes"}` in the alert's JSON; null while there is none).
function clipControls(a, k) {
  if (!a.clip) return "";
  const mb = (a.clip.bytes / 1e6).toFixed(1);
  return `<div class="clip"><button class="clip-toggle" data-key="${esc(k)}">${wall.clips.has(k) ? "Hide clip" : "Play clip"}</button>
    <a href="${esc(a.clip.url)}" download>MP4 · ${mb} MB</a></div>`;
}

// Opens or closes an alert's clip. The <video> reads the clip with range
// requests on the page's own sign-in (its session cookie, as the snapshot's
// <img> does); a browser that cannot decode it (H.265 in some) says so, and
// the download link remains.
function toggleClip(k) {
  const open = wall.clips.get(k);
  const a = wall.alerts.get(k);
  if (open) {
    closeClip(k, open);
  } else if (a && a.clip) {
    const video = document.createElement("video");
    video.className = "clip-video";
    video.controls = true;
    video.preload = "metadata";
    video.src = a.clip.url;
    video.addEventListener("error", () => {
      const code = video.error ? video.error.code : 0;
      video.title = code === 4 ? "this browser cannot play this clip: download it" : `clip error ${code}`;
      video.classList.add("failed");
      wall.errors.push(`clip ${a.gateway}/${a.id}: media error ${code}`);
    });
    wall.clips.set(k, video);
  }
  renderAlerts();
}

function closeClip(k, video) {
  video.pause();
  video.removeAttribute("src");
  video.load(); // lets go of the connection
  video.remove();
  wall.clips.delete(k);
}

async function acknowledge(gateway, id) {
  const operator = $("operator").value.trim() || "wall-operator";
  const resp = await fetch(`${alertPath(gateway, id)}/ack`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ operator }),
  });
  if (signedOut(resp)) return;
  if (!resp.ok && resp.status !== 409) wall.errors.push(`ack ${gateway}/${id}: HTTP ${resp.status}`);
  // The ledger's change comes back to every page over /api/events.
}

// ---------------------------------------------------------------- map

function renderMap() {
  const svg = $("map");
  const cams = [...wall.cameras.values()].filter((c) => c.location);
  if (!cams.length) {
    svg.innerHTML = `<text x="10" y="20">no camera positions configured</text>`;
    return;
  }
  const lats = cams.map((c) => c.location.lat);
  const lons = cams.map((c) => c.location.lon);
  const pad = 0.01;
  const [minLat, maxLat] = [Math.min(...lats) - pad, Math.max(...lats) + pad];
  const [minLon, maxLon] = [Math.min(...lons) - pad, Math.max(...lons) + pad];
  const x = (lon) => 20 + ((lon - minLon) / (maxLon - minLon)) * 360;
  const y = (lat) => 240 - ((lat - minLat) / (maxLat - minLat)) * 220;
  let out = `<rect x="10" y="10" width="380" height="240" fill="none" stroke="#30363d"/>`;
  for (const c of cams) {
    const a = activeAlertFor(key(c));
    const cls = a ? "cam alerting" : c.state === "live" ? "cam live" : "cam";
    const cx = x(c.location.lon).toFixed(1);
    const cy = y(c.location.lat).toFixed(1);
    out += `<circle class="${cls}" cx="${cx}" cy="${cy}" r="${a ? 7 : 4}"><title>${esc(c.name || c.id)}</title></circle>`;
    out += `<text x="${(+cx + 8).toFixed(1)}" y="${(+cy + 3).toFixed(1)}">${esc(c.id)}</text>`;
  }
  svg.innerHTML = out;
}

// ---------------------------------------------------------------- data

function setCameras(list) {
  const groups = new Set();
  for (const c of list) {
    wall.cameras.set(key(c), c);
    groups.add(c.group || c.gateway);
  }
  const filter = $("filter");
  for (const g of groups) {
    if (![...filter.options].some((o) => o.value === `group:${g}`)) {
      const o = document.createElement("option");
      o.value = `group:${g}`;
      o.textContent = `group ${g}`;
      filter.appendChild(o);
    }
  }
  renderTiles();
  renderMap();
}

async function loadAlerts() {
  const resp = await fetch("/api/alerts?limit=200", { cache: "no-store" });
  if (signedOut(resp) || !resp.ok) return;
  const body = await resp.json();
  wall.alerts.clear();
  for (const a of body.alerts) wall.alerts.set(wall.alertKey(a), a);
  renderAlerts();
  renderTiles();
  renderMap();
}

function connectEvents() {
  const es = new EventSource("/api/events");
  es.onopen = () => {
    wall.connected = true;
    $("link").textContent = "live";
    $("link").className = "badge up";
    loadAlerts();
  };
  es.onerror = () => {
    wall.connected = false;
    $("link").textContent = "reconnecting…";
    $("link").className = "badge down";
    // EventSource hides the status; ask once whether the session ended.
    fetch("/api/gateways", { cache: "no-store" }).then(signedOut, () => false);
  };
  es.addEventListener("cameras", (e) => setCameras(JSON.parse(e.data).cameras));
  es.addEventListener("alert", (e) => {
    const a = JSON.parse(e.data);
    wall.alerts.set(wall.alertKey(a), { ...a, shown_at: Date.now() });
    renderAlerts();
    renderTiles();
    renderMap();
  });
  es.addEventListener("resync", () => loadAlerts());
}

async function main() {
  $("filter").addEventListener("change", renderTiles);
  $("alerts").addEventListener("click", (e) => {
    const b = e.target.closest("button.ack");
    if (b) acknowledge(b.dataset.gateway, b.dataset.id);
    const c = e.target.closest("button.clip-toggle");
    if (c) toggleClip(c.dataset.key);
  });
  try {
    const h = await (await fetch("/healthz")).json();
    $("center-name").textContent = `center ${h.center}`;
  } catch (e) {
    wall.errors.push(`healthz: ${e}`);
  }
  try {
    const resp = await fetch("/api/cameras", { cache: "no-store" });
    if (signedOut(resp)) return;
    setCameras((await resp.json()).cameras);
  } catch (e) {
    wall.errors.push(`cameras: ${e}`);
  }
  await loadAlerts();
  connectEvents();
  setInterval(updateAges, 500);
}

main();
