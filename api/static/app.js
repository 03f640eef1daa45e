// Live bed tiles fed by /ws/scores: a snapshot, then one message per new score.
"use strict";

const STALE_AFTER_S = 15;
const LOW_BELOW = 0.3;
const MID_BELOW = 0.7;
const RECONNECT_MAX_S = 10;

const grid = document.getElementById("grid");
const empty = document.getElementById("empty");
const conn = document.getElementById("conn");
const connText = document.getElementById("conn-text");
const tileTemplate = document.getElementById("tile");
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** bed_id -> { score, el } */
const beds = new Map();
// Server clock minus browser clock, so that ages do not depend on the monitor's clock being right.
let clockOffsetS = 0;
let reconnectDelayS = 0.5;

const serverNow = () => Date.now() / 1000 + clockOffsetS;

function level(risk) {
  if (risk === null || risk === undefined) return "none";
  if (risk < LOW_BELOW) return "low";
  if (risk < MID_BELOW) return "mid";
  return "high";
}

function formatAge(ageS) {
  const s = Math.max(0, Math.floor(ageS));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

function tileFor(bedId) {
  const known = beds.get(bedId);
  if (known) return known.el;
  const el = tileTemplate.content.firstElementChild.cloneNode(true);
  el.querySelector(".bed").textContent = bedId;
  el.dataset.bed = bedId;
  // Keep tiles sorted by bed id ("bed-2" before "bed-10").
  const after = [...grid.children].find((other) => collator.compare(other.dataset.bed, bedId) > 0);
  grid.insertBefore(el, after || null);
  empty.hidden = true;
  return el;
}

function render(el, score) {
  const risky = score.state === "ok" && score.risk !== null;
  const lvl = risky ? level(score.risk) : "none";
  el.classList.remove("low", "mid", "high", "none");
  el.classList.add(lvl);
  el.querySelector(".value").textContent = risky ? `${Math.round(score.risk * 100)}%` : "—";
  el.querySelector(".fill").style.width = risky ? `${Math.round(score.risk * 100)}%` : "0";
  const badge = el.querySelector(".badge");
  const state = score.state === "ok" && score.complete === false ? "incomplete" : score.state;
  badge.className = `badge ${state}`;
  badge.textContent = state;
  const reason = el.querySelector(".reason");
  reason.textContent = score.state === "unscorable" ? score.reason || "no reason given" : "";
  reason.title = reason.textContent;
  el.querySelector(".hr").textContent =
    score.heart_rate_bpm === null || score.heart_rate_bpm === undefined
      ? "— bpm" : `${Math.round(score.heart_rate_bpm)} bpm`;
  el.title = `window ${score.window_s} s ending ${new Date(score.window_end_s * 1000).toLocaleTimeString()}`
    + (score.models && score.models.length ? ` · models: ${score.models.join(", ")}` : "");
}

function apply(score) {
  const known = beds.get(score.bed_id);
  // Scores may arrive twice or out of order (replays, snapshot vs live): keep the newest window.
  if (known && known.score.window_end_s > score.window_end_s) return;
  const el = tileFor(score.bed_id);
  beds.set(score.bed_id, { score, el });
  render(el, score);
  tickBed(beds.get(score.bed_id), serverNow());
}

function tickBed(bed, now) {
  const ageS = now - bed.score.window_end_s;
  const stale = ageS > STALE_AFTER_S;
  bed.el.classList.toggle("stale", stale);
  bed.el.querySelector(".age").textContent = stale ? `stale · ${formatAge(ageS)}` : `${formatAge(ageS)} ago`;
  return stale;
}

function tick() {
  const now = serverNow();
  let high = 0;
  let stale = 0;
  for (const bed of beds.values()) {
    const isStale = tickBed(bed, now);
    if (isStale) stale += 1;
    else if (bed.score.state === "ok" && level(bed.score.risk) === "high") high += 1;
  }
  document.getElementById("n-beds").textContent = beds.size;
  document.getElementById("n-high").textContent = high;
  document.getElementById("n-high").parentElement.classList.toggle("high", high > 0);
  document.getElementById("n-stale").textContent = stale;
  document.title = high ? `(${high}) holmes · live AF risk` : "holmes · live AF risk";
}

function setConnection(state, text) {
  conn.className = `conn ${state}`;
  connText.textContent = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/scores`);
  setConnection("connecting", reconnectDelayS > 0.5 ? "reconnecting…" : "connecting…");
  ws.onopen = () => {
    reconnectDelayS = 0.5;
    setConnection("live", "live");
  };
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (typeof msg.sent_at_s === "number") clockOffsetS = msg.sent_at_s - Date.now() / 1000;
    if (msg.type === "snapshot") {
      msg.beds.forEach((bed) => apply(bed.latest));
      tick();
    } else if (msg.type === "score") {
      apply(msg.score);
    }
  };
  ws.onclose = () => {
    const delayS = reconnectDelayS * (0.8 + 0.4 * Math.random());
    reconnectDelayS = Math.min(reconnectDelayS * 2, RECONNECT_MAX_S);
    setConnection("offline", `offline · retry in ${Math.ceil(delayS)} s`);
    setTimeout(connect, delayS * 1000);
  };
  ws.onerror = () => ws.close();
}

setInterval(tick, 1000);
tick();
connect();
