// The bed page: score history over a selectable range, alert events on it, the ensemble members per score.
"use strict";

import { ackButton } from "./alerts.js";
import { ecgStrip, historyPlot } from "./charts.js";
import { api, formatTime, h, on, pct, quality, staleness, state } from "./core.js";

const RANGES = [["15 min", 900], ["1 h", 3600], ["6 h", 6 * 3600], ["24 h", 86400], ["7 d", 7 * 86400]];
const MAX_POINTS = 20000;

const view = () => document.getElementById("view-bed");
let current = { bedId: null, rangeS: 3600, scores: [], events: [], alerts: [], pick: null, selected: null };

async function fetchHistory(bedId, sinceS) {
  const scores = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ bed_id: bedId, since_s: String(sinceS), limit: "5000" });
    if (cursor) params.set("cursor", cursor);
    const page = await api(`/api/scores?${params}`);
    scores.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && scores.length < MAX_POINTS);
  return scores.reverse();
}

export async function showBed(bedId) {
  current = { ...current, bedId, scores: [], events: [], alerts: [], selected: null };
  const root = view();
  root.querySelector(".bed-title").textContent = bedId;
  root.querySelector(".bed-status").textContent = "loading…";
  await reload();
}

async function reload() {
  const { bedId, rangeS } = current;
  let bed;
  try {
    bed = await api(`/api/beds/${encodeURIComponent(bedId)}`);
  } catch (err) {
    view().querySelector(".bed-status").textContent = err.status === 404 ? "no scores from this bed" : err.message;
    return;
  }
  const latestEnd = bed.latest.window_end_s;
  // The bed's own clock: the range ends at its latest window, whatever the monitor's clock says.
  const [scores, events, alerts] = await Promise.all([
    fetchHistory(bedId, latestEnd - rangeS),
    api(`/api/beds/${encodeURIComponent(bedId)}/events`),
    api(`/api/alerts?bed_id=${encodeURIComponent(bedId)}&limit=200`),
  ]);
  if (current.bedId !== bedId) return;
  current.scores = scores;
  current.events = events;
  current.alerts = alerts.items;
  current.clockShiftS = bed.latest.window_end_s - bed.latest.received_at_s;
  renderHeader(bed);
  renderPlot();
  renderEvents();
  renderScores();
}

function renderHeader(bed) {
  const root = view();
  const s = bed.latest;
  const status = staleness(bed).stale ? "stale" : s.status || bed.status;
  root.querySelector(".bed-status").replaceChildren(
    h("span", { class: `badge status ${status}`, text: status }),
    h("span", { class: `big ${s.state === "ok" ? "" : "muted"}`, text: s.state === "ok" ? pct(s.risk) : "—" }),
    h("span", { text: s.heart_rate_bpm ? `${Math.round(s.heart_rate_bpm)} bpm` : "— bpm" }),
    h("span", { class: `sqi ${quality(s).cls}`, text: quality(s).label }),
    h("span", { class: "muted", text: `models: ${(s.models || []).join(", ") || "—"}`
      + (skippedMembers(s).length ? ` (skipped: ${skippedMembers(s).join(", ")})` : "") }),
    h("span", { class: "muted", text: `windows lost: ${bed.windows_lost}` }),
    bed.alert && bed.alert.acknowledged_at_s === null ? ackButton(bed.alert) : "",
  );
  ecgStrip(root.querySelector("canvas.bed-ecg"), s.strip_mv || [], s.strip_hz);
}

function renderPlot() {
  const canvas = view().querySelector("canvas.history");
  const scores = current.scores;
  const t1 = scores.length ? scores[scores.length - 1].window_end_s : Date.now() / 1000;
  const t0 = t1 - current.rangeS;
  const shift = current.clockShiftS || 0;
  const spans = current.alerts.map((a) => ({
    from: a.raised_window_end_s,
    to: a.cleared_window_end_s ?? t1,
    acknowledged: a.acknowledged_at_s !== null,
  }));
  const marks = current.events.filter((e) => e.kind === "acknowledged")
    .map((e) => ({ t: e.at_s + shift, label: `ack ${e.actor || ""}`, color: "#d29922" }));
  current.pick = historyPlot(canvas, scores, {
    t0, t1, threshold: state.config.alert_threshold, clearThreshold: state.config.alert_clear_threshold,
    spans, marks,
  });
  view().querySelector(".range-note").textContent =
    `${scores.length} windows · ${formatTime(t0, true)} – ${formatTime(t1)} (bed clock)`;
}

function renderEvents() {
  const rows = current.events.slice().reverse().map((e) => h("tr", {},
    h("td", { text: formatTime(e.at_s, true) }),
    h("td", {}, h("span", { class: `badge ${e.kind === "raised" ? "alerting" : "ok"}`, text: e.kind })),
    h("td", { text: `#${e.alert_id}` }),
    h("td", { class: "num", text: pct(e.risk) }),
    h("td", { text: e.actor || "—" }),
    h("td", { class: "note", text: e.note || "" })));
  view().querySelector(".events").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["When", "Event", "Alert", "Risk", "Who", "Note"].map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "empty", text: "No alerts" })))));
}

// Provenance the ensemble puts in a score's extra; shown in words rather than as key=value.
const PROVENANCE = ["plan_id", "partial", "skipped_models", "budget_ms", "predicted_ms", "measured_ms"];

/** The members skipped for the deadline: ``extra.skipped_models`` is comma-separated ids (or only a count). */
function skippedMembers(score) {
  const skipped = (score.extra || {}).skipped_models;
  if (skipped === null || skipped === undefined || skipped === "" || skipped === 0 || skipped === "0") return [];
  if (typeof skipped === "number") return [`${skipped} skipped`];
  return String(skipped).split(",").map((m) => m.trim()).filter(Boolean);
}

function memberList(s) {
  return [
    ...(s.models || []).map((m) => h("span", { class: "member", text: m })),
    ...skippedMembers(s).map((m) => h("span", { class: "member skipped", text: m, title: "skipped: over the latency deadline" })),
  ];
}

function provenance(s) {
  const x = s.extra || {};
  const ms = (v) => (typeof v === "number" ? `${Math.round(v)} ms` : "—");
  const parts = [];
  if (x.plan_id !== undefined && x.plan_id !== null) parts.push(`plan #${x.plan_id}`);
  if (x.measured_ms !== undefined || x.predicted_ms !== undefined) {
    parts.push(`${ms(x.measured_ms)} measured / ${ms(x.predicted_ms)} predicted p99`);
  }
  if (x.budget_ms !== undefined) parts.push(`budget ${ms(x.budget_ms)}`);
  const others = Object.entries(x).filter(([k]) => !PROVENANCE.includes(k)).map(([k, v]) => `${k}=${v}`);
  return [...parts, ...others].join(" · ");
}

function scoreRow(s) {
  const note = [s.reason, provenance(s)].filter(Boolean).join(" · ");
  return h("tr", { class: current.selected === s ? "selected" : "" },
    h("td", { text: formatTime(s.window_end_s) }),
    h("td", {}, h("span", { class: `badge status ${s.status}`, text: s.status })),
    h("td", { class: "num", text: s.state === "ok" ? pct(s.risk) : "—" }),
    h("td", { class: "num", text: s.heart_rate_bpm ? Math.round(s.heart_rate_bpm) : "—" }),
    h("td", { class: "num", text: s.quality === null || s.quality === undefined ? "—" : s.quality.toFixed(2) }),
    h("td", { class: "members" }, ...memberList(s)),
    h("td", { class: "note", text: note, title: note }));
}

function renderScores() {
  const recent = current.scores.slice(-30).reverse();
  const rows = current.selected ? [current.selected, ...recent.filter((s) => s !== current.selected)] : recent;
  view().querySelector(".scores").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["Window end", "Status", "Risk", "HR", "SQI", "Ensemble members (struck: skipped)",
      "Reason / provenance"]
      .map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.map(scoreRow))));
}

export function initBed() {
  const root = view();
  const ranges = root.querySelector(".ranges");
  for (const [label, seconds] of RANGES) {
    ranges.append(h("button", {
      type: "button", class: seconds === current.rangeS ? "active" : "", text: label,
      onclick: (e) => {
        current.rangeS = seconds;
        ranges.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b === e.target));
        reload();
      },
    }));
  }
  const canvas = root.querySelector("canvas.history");
  const tip = root.querySelector(".tooltip");
  canvas.addEventListener("mousemove", (e) => {
    const s = current.pick && current.pick(e.offsetX);
    if (!s) return;
    tip.hidden = false;
    tip.textContent = `${formatTime(s.window_end_s)} · ${s.status} · ${s.state === "ok" ? pct(s.risk) : s.reason}`
      + ` · ${(s.models || []).join(", ") || "no models"}`
      + (skippedMembers(s).length ? ` · skipped ${skippedMembers(s).join(", ")}` : "");
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (e) => {
    current.selected = current.pick && current.pick(e.offsetX);
    renderScores();
  });
  on("score", (score) => {
    if (root.hidden || score.bed_id !== current.bedId) return;
    if (current.scores.length && current.scores[current.scores.length - 1].window_end_s >= score.window_end_s) return;
    current.scores.push(score);
    renderHeader(state.beds.get(score.bed_id));
    renderPlot();
    renderScores();
  });
  on("alert", (msg) => {
    if (!root.hidden && msg.alert.bed_id === current.bedId) reload();
  });
  window.addEventListener("resize", () => {
    if (!root.hidden) renderPlot();
  });
}
