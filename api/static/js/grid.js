// The live bed grid: one tile per bed with risk, trend, ECG strip, signal quality, age, status and alert.
"use strict";

import { ackButton } from "./alerts.js";
import { ecgStrip, sparkline } from "./charts.js";
import { collator, formatAge, formatTime, h, level, on, pct, quality, serverNow, staleness, state } from "./core.js";

const tiles = new Map(); // bed_id -> element

function statusOf(bed, stale) {
  if (stale) return "stale";
  return bed.latest.status || (bed.latest.state === "ok" ? "ok" : "unscorable");
}

function buildTile(bedId) {
  const el = h("article", { class: "tile", dataset: { bed: bedId }, tabindex: "0" },
    h("div", { class: "top" },
      h("a", { class: "bed", href: `/beds/${encodeURIComponent(bedId)}`, text: bedId }),
      h("span", { class: "badge status" })),
    h("div", { class: "alert-flag", hidden: true }),
    h("div", { class: "risk" }, h("span", { class: "value" }), h("span", { class: "label", text: "AF risk" })),
    h("canvas", { class: "spark", "aria-label": "AF risk, last hour" }),
    h("canvas", { class: "ecg", "aria-label": "ECG strip, lead 0" }),
    h("p", { class: "reason" }),
    h("div", { class: "bottom" },
      h("span", { class: "hr" }), h("span", { class: "sqi" }), h("span", { class: "age" })));
  el.addEventListener("click", (e) => {
    if (e.target.closest("button, a")) return;
    el.querySelector("a.bed").click();
  });
  const grid = document.getElementById("grid");
  const after = [...grid.children].find((other) => collator.compare(other.dataset.bed, bedId) > 0);
  grid.insertBefore(el, after || null);
  document.getElementById("empty").hidden = true;
  tiles.set(bedId, el);
  return el;
}

function renderTile(bed, now = serverNow()) {
  const el = tiles.get(bed.bed_id) || buildTile(bed.bed_id);
  const score = bed.latest;
  const { ageS, stale } = staleness(bed, now);
  const status = statusOf(bed, stale);
  const scored = score.state === "ok" && score.risk !== null;
  const lvl = scored ? level(score.risk) : "none";
  el.classList.remove("low", "mid", "high", "none");
  el.classList.add(lvl);
  el.classList.toggle("stale", stale);
  el.dataset.status = status;
  el.dataset.windowEnd = String(score.window_end_s);
  el.querySelector(".value").textContent = scored ? pct(score.risk) : "—";
  const badge = el.querySelector(".badge.status");
  badge.className = `badge status ${status}`;
  badge.textContent = status;
  const reason = el.querySelector(".reason");
  let why = "";
  if (status === "stale") why = `no score for ${formatAge(ageS)}`;
  else if (score.state === "unscorable") why = score.reason || "no reason given";
  else if (status === "partial") why = `partial: ${score.extra.skipped_models || "ensemble members skipped"}`;
  else if (status === "incomplete") why = "samples missing in this window";
  reason.textContent = why;
  reason.title = why;
  el.querySelector(".hr").textContent =
    score.heart_rate_bpm === null || score.heart_rate_bpm === undefined ? "— bpm"
      : `${Math.round(score.heart_rate_bpm)} bpm`;
  const q = quality(score);
  const sqi = el.querySelector(".sqi");
  sqi.textContent = q.label;
  sqi.title = q.title;
  sqi.className = `sqi ${q.cls}`;
  el.querySelector(".age").textContent = stale ? `stale · ${formatAge(ageS)}` : `${formatAge(ageS)} ago`;
  el.title = `window ${score.window_s} s ending ${formatTime(score.window_end_s)}`
    + (score.models && score.models.length ? ` · models: ${score.models.join(", ")}` : "");
  const flag = el.querySelector(".alert-flag");
  const alert = bed.alert;
  el.classList.toggle("alerting", Boolean(alert && alert.state === "active"));
  el.classList.toggle("unacked", Boolean(alert && alert.acknowledged_at_s === null));
  if (alert) {
    const acked = alert.acknowledged_at_s !== null;
    flag.hidden = false;
    flag.className = `alert-flag ${alert.state} ${acked ? "acked" : "unacked"}`;
    flag.replaceChildren(
      h("span", { class: "flag-text", text: alert.state === "active"
        ? `ALERT since ${formatTime(alert.raised_at_s)}` : "ALERT cleared" }),
      acked ? h("span", { class: "flag-ack", text: `✓ ${alert.acknowledged_by}` }) : ackButton(alert, "small"),
    );
  } else {
    flag.hidden = true;
    flag.replaceChildren();
  }
  drawTileCharts(el, bed);
}

function drawTileCharts(el, bed) {
  sparkline(el.querySelector("canvas.spark"), state.trends.get(bed.bed_id) || [],
    { spanS: state.config.trend_window_s, threshold: state.config.alert_threshold });
  ecgStrip(el.querySelector("canvas.ecg"), bed.latest.strip_mv || [], bed.latest.strip_hz);
}

function renderAll() {
  const now = serverNow();
  for (const bed of state.beds.values()) renderTile(bed, now);
  summary(now);
}

function summary(now = serverNow()) {
  let high = 0;
  let stale = 0;
  let alerting = 0;
  for (const bed of state.beds.values()) {
    const s = staleness(bed, now);
    if (s.stale) stale += 1;
    else if (bed.latest.state === "ok" && level(bed.latest.risk) === "high") high += 1;
    if (bed.alert && bed.alert.acknowledged_at_s === null) alerting += 1;
  }
  document.getElementById("n-beds").textContent = state.beds.size;
  document.getElementById("n-high").textContent = high;
  document.getElementById("n-high").parentElement.classList.toggle("high", high > 0);
  document.getElementById("n-stale").textContent = stale;
  document.getElementById("n-alerts").textContent = alerting;
  document.getElementById("n-alerts").parentElement.classList.toggle("high", alerting > 0);
  document.title = alerting ? `(${alerting}) holmes · live AF risk` : "holmes · live AF risk";
}

function tick() {
  const now = serverNow();
  for (const bed of state.beds.values()) {
    const el = tiles.get(bed.bed_id);
    if (!el) continue;
    const { ageS, stale } = staleness(bed, now);
    if (stale !== el.classList.contains("stale")) renderTile(bed, now);
    else el.querySelector(".age").textContent = stale ? `stale · ${formatAge(ageS)}` : `${formatAge(ageS)} ago`;
  }
  summary(now);
}

export function initGrid() {
  on("snapshot", renderAll);
  on("trends", () => {
    for (const bed of state.beds.values()) {
      const el = tiles.get(bed.bed_id);
      if (el) drawTileCharts(el, bed);
    }
  });
  on("score", (score) => {
    renderTile(state.beds.get(score.bed_id));
    summary();
  });
  on("alert", (msg) => {
    const bed = state.beds.get(msg.alert.bed_id);
    if (bed) renderTile(bed);
    summary();
  });
  on("user", renderAll);
  on("view:grid", renderAll);
  window.addEventListener("resize", renderAll);
  setInterval(tick, 1000);
}
