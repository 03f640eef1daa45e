// Operations: the model registry (table, status, metrics, upload/promote/retire) and the ensemble page.
"use strict";

import { bars } from "./charts.js";
import { api, can, formatAge, formatTime, h, on, serverNow, toast } from "./core.js";

const ENSEMBLE_REFRESH_MS = 5000;

// -- models ------------------------------------------------------------------------------------------------

const number = (v, digits = 3) => (typeof v === "number" ? v.toFixed(digits) : "—");

async function renderModels() {
  const root = document.getElementById("view-models");
  if (root.hidden) return;
  root.querySelector(".upload").hidden = !can("data_scientist");
  let models;
  try {
    models = await api("/api/models");
  } catch (err) {
    root.querySelector(".table-wrap").replaceChildren(h("p", { class: "empty", text: err.message }));
    return;
  }
  const admin = can("admin");
  const rows = models.map((m) => {
    const backtest = (m.metrics && m.metrics.backtest) || {};
    const latency = m.latency_ms || {};
    const firstBatch = Object.keys(latency).sort((a, b) => a - b)[0];
    const actions = [];
    if (admin && !["active", "retired"].includes(m.status)) {
      actions.push(h("button", { type: "button", text: "Promote", onclick: () => transition(m, "promote") }));
    }
    if (admin && m.status !== "retired") {
      actions.push(h("button", { type: "button", class: "danger", text: "Retire", onclick: () => transition(m, "retire") }));
    }
    return h("tr", {},
      h("td", { text: m.name }), h("td", { class: "num", text: m.version }), h("td", { text: m.family }),
      h("td", {}, h("span", { class: `badge model ${m.status}`, text: m.status })),
      h("td", { class: "num", text: number(backtest.roc_auc) }), h("td", { class: "num", text: number(backtest.pr_auc) }),
      h("td", { class: "num", text: number(backtest.ece) }),
      h("td", { class: "num", text: firstBatch ? `${number(latency[firstBatch], 2)} (b=${firstBatch})` : "—" }),
      h("td", { text: `${m.contract.leads} lead · ${m.contract.window_s} s · ${m.contract.input_kind}` }),
      h("td", { text: m.owner || "—" }),
      h("td", { text: formatTime(Date.parse(m.updated_at) / 1000, true) }),
      h("td", { class: "actions" }, ...actions));
  });
  root.querySelector(".table-wrap").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["Name", "Version", "Family", "Status", "ROC-AUC", "PR-AUC", "ECE", "Latency ms",
      "Contract", "Owner", "Updated", ""].map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 12, class: "empty", text: "No models registered" })))));
}

async function transition(model, action) {
  try {
    await api(`/api/models/${encodeURIComponent(model.name)}/${model.version}/${action}`, { method: "POST", body: {} });
    toast(`${model.name} v${model.version}: ${action} done`, "ok");
  } catch (err) {
    toast(`${action} refused: ${err.message}`, "error");
  }
  renderModels();
}

async function upload(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  for (const key of ["name", "version", "owner"]) if (!form.get(key)) form.delete(key);
  if (!form.get("card") || !form.get("card").size) form.delete("card");
  try {
    const model = await api("/api/models", { method: "POST", form });
    toast(`registered ${model.name} v${model.version} (${model.status})`, "ok");
    event.target.reset();
  } catch (err) {
    toast(`upload refused: ${err.message}`, "error");
  }
  renderModels();
}

// -- ensemble ---------------------------------------------------------------------------------------------

function card(title, value, note) {
  return h("div", { class: "card" }, h("div", { class: "card-title", text: title }),
    h("div", { class: "card-value", text: value }), note ? h("div", { class: "card-note", text: note }) : "");
}

function unavailable(title, item) {
  return h("div", { class: "card unavailable" }, h("div", { class: "card-title", text: title }),
    h("div", { class: "card-value muted", text: "not yet available" }), h("div", { class: "card-note", text: item.reason }));
}

const ms = (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} ms`);

function table(headers, rows, empty) {
  return h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "empty", text: empty }))));
}

const members = (ids) => h("div", { class: "members" }, ...ids.map((m) => h("span", { class: "member", text: m })));

function renderPlans(root, e) {
  const cardsEl = root.querySelector(".plan-cards");
  if (!e.selection.available) {
    // The four plan figures share one reason (no plan yet, or no plans topic): say it once.
    cardsEl.replaceChildren(unavailable("Ensemble plans", e.selection),
      card("Plan reader", e.plans.state, e.plans.last_error || `${e.plans.topic || "no topic"} · ${e.plans.undecodable} undecodable`));
    for (const cls of [".selection", ".latency-compare", ".replans"]) {
      root.querySelector(cls).replaceChildren(h("p", { class: "empty", text: e.selection.reason }));
    }
    return;
  }
  const workers = e.selection.workers;
  const newest = workers[0];
  const cmp = e.predicted_vs_measured_latency;
  const verdict = cmp.within_budget === null ? "no window measured yet"
    : cmp.within_budget ? "measured p99 within budget" : "measured p99 OVER budget";
  cardsEl.replaceChildren(
    card("Selection", `${newest.members.length} model${newest.members.length === 1 ? "" : "s"}`,
      `${newest.members.join(", ")} · ${workers.length > 1 ? `${workers[0].worker_id} (of ${workers.length} workers) · ` : ""}plan #${newest.plan_id} since ${formatTime(newest.since_s)} · validation ROC-AUC ${number(newest.objective)}`),
    card("Budget", ms(e.budget_ms.budget_ms), workers.length > 1 ? `tightest of ${workers.length} workers` : "end to end, per window"),
    card("Predicted vs measured p99", `${ms(cmp.predicted_p99_ms)} / ${ms(cmp.measured_p99_ms)}`,
      `predicted p50 ${ms(cmp.predicted_p50_ms)} · worker-measured p99 ${ms(cmp.worker_measured_p99_ms)} · ${verdict}`),
    card("Re-plans", e.replans.changes, `${e.replans.total} plans stored · reader ${e.plans.state}`
      + (e.plans.undecodable + e.plans.rejected ? ` · ${e.plans.undecodable + e.plans.rejected} bad records` : "")),
  );
  root.querySelector(".selection").replaceChildren(table(
    ["Worker", "Plan", "Members", "Objective", "Since", "Beds", "Windows/s", "Reason"],
    workers.map((w) => h("tr", {},
      h("td", { text: w.worker_id }), h("td", { class: "num", text: `#${w.plan_id}` }), h("td", {}, members(w.members)),
      h("td", { class: "num", text: number(w.objective) }), h("td", { text: formatTime(w.since_s, true) }),
      h("td", { class: "num", text: w.beds }), h("td", { class: "num", text: number(w.windows_per_s, 2) }),
      h("td", { class: "note", text: w.reason }))),
    "No plan in force"));
  const cmpRows = cmp.workers.map((w) => h("tr", {},
    h("td", { text: w.worker_id }), h("td", { class: "num", text: ms(w.budget_ms) }),
    h("td", { class: "num", text: ms(w.predicted_p50_ms) }), h("td", { class: "num", text: ms(w.predicted_p99_ms) }),
    h("td", { class: "num", text: ms(w.measured_p99_ms) }), h("td", { class: "num", text: `×${number(w.slowdown, 2)}` })));
  root.querySelector(".latency-compare").replaceChildren(
    table(["Worker", "Budget", "Predicted p50", "Predicted p99", "Measured p99 (worker, before the plan)", "Slowdown"],
      cmpRows, "No plan in force"),
    h("p", { class: "muted", text: `Measured now: p50 ${ms(cmp.measured_p50_ms)} · p99 ${ms(cmp.measured_p99_ms)} at the API `
      + `(last ${e.latency.n} windows, Kafka hop included) · worker p99 ${ms(cmp.worker_measured_p99_ms)} `
      + `(last ${cmp.worker_measured_windows} windows) · budget ${ms(cmp.budget_ms)}: ${verdict}` }));
  root.querySelector(".replans").replaceChildren(table(
    ["When", "Worker", "Plan", "Reason", "Previous", "→ Members", "Beds", "Windows/s", "Predicted p99", "Budget"],
    e.replans.items.map((p) => h("tr", {},
      h("td", { text: formatTime(p.at_s, true) }), h("td", { text: p.worker_id }),
      h("td", { class: "num", text: `#${p.plan_id}` }), h("td", { class: "note", text: p.reason, title: p.reason }),
      h("td", {}, p.previous.length ? members(p.previous) : "—"), h("td", {}, members(p.members)),
      h("td", { class: "num", text: p.beds }), h("td", { class: "num", text: number(p.windows_per_s, 2) }),
      h("td", { class: "num", text: ms(p.predicted_p99_ms) }), h("td", { class: "num", text: ms(p.budget_ms) }))),
    "No plan received"));
}

async function renderEnsemble() {
  const root = document.getElementById("view-ensemble");
  if (root.hidden) return;
  let e;
  try {
    e = await api("/api/ensemble");
  } catch (err) {
    root.querySelector(".plan-cards").replaceChildren(h("p", { class: "empty", text: err.message }));
    return;
  }
  renderPlans(root, e);
  root.querySelector(".cards:not(.plan-cards)").replaceChildren(
    card("Throughput", `${e.throughput_windows_per_s.toFixed(2)} windows/s`, `over the last ${e.throughput_window_s} s`),
    card("Windows scored", e.windows_scored, `partial ${e.windows_partial}`),
    card("Unscorable", e.windows_unscorable),
    card("Lost", e.windows_lost, "missing between a bed's windows"),
    card("Bed member changes", e.provenance_changes, "a bed's members changed between full scores (provenance)"),
    card("Latency p50 / p95", `${ms(e.latency.p50_ms)} / ${ms(e.latency.p95_ms)}`,
      `p99 ${ms(e.latency.p99_ms)} · max ${ms(e.latency.max_ms)} · last ${e.latency.n} windows`),
    card("Dead letters", e.dead_letters.total, `monitor ${e.dead_letters.state}`),
  );
  let previous = 0;
  const histogram = Object.entries(e.latency.histogram).map(([bound, cumulative]) => {
    const row = [bound === "+Inf" ? "> 30 s" : `≤ ${bound} ms`, cumulative - previous];
    previous = cumulative;
    return row;
  });
  bars(root.querySelector("canvas.latency"), histogram);
  root.querySelector(".models-served").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["Model", "Version", "Windows", "Beds", "Last seen"].map((t) => h("th", { text: t })))),
    h("tbody", {}, e.served_models.length ? e.served_models.map((m) => h("tr", {},
      h("td", { text: m.name }), h("td", { text: m.version || "—" }), h("td", { class: "num", text: m.windows }),
      h("td", { class: "num", text: m.beds }), h("td", { text: `${formatAge(serverNow() - m.last_seen_s)} ago` })))
      : h("tr", {}, h("td", { colspan: 5, class: "empty", text: "No scores received since the api started" })))));
  const reasons = Object.entries(e.dead_letters.by_reason).sort((a, b) => b[1] - a[1]);
  root.querySelector(".dl-reasons").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, h("th", { text: "Reason" }), h("th", { text: "Count" }))),
    h("tbody", {}, reasons.length ? reasons.map(([r, n]) => h("tr", {}, h("td", { text: r }), h("td", { class: "num", text: n })))
      : h("tr", {}, h("td", { colspan: 2, class: "empty", text: "No dead letters" })))));
  root.querySelector(".dl-recent").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["When", "Reason", "Where", "Bytes", "Detail"].map((t) => h("th", { text: t })))),
    h("tbody", {}, e.dead_letters.recent.map((d) => h("tr", {},
      h("td", { text: formatTime(d.received_at_s) }), h("td", { text: d.reason }),
      h("td", { text: d.topic ? `${d.topic}[${d.partition}]@${d.offset}` : "—" }),
      h("td", { class: "num", text: d.payload_bytes ?? "—" }), h("td", { class: "note", text: d.detail || "" }))))));
}

export function initOps() {
  document.querySelector("#view-models form.upload").addEventListener("submit", upload);
  on("view:models", renderModels);
  on("user", renderModels);
  on("view:ensemble", renderEnsemble);
  setInterval(renderEnsemble, ENSEMBLE_REFRESH_MS);
}
