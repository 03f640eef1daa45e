// Alerts: acknowledging, the banner of alerts needing attention, and the alerts view.
"use strict";

import { api, applyAlert, can, emit, formatTime, h, on, pct, state, toast } from "./core.js";

/** Acknowledge through the API; the WebSocket brings the change to every page, this one included. */
export async function acknowledge(alertId, note) {
  if (!can("clinician")) {
    toast("Sign in as a clinician to acknowledge alerts", "warn");
    emit("need-sign-in");
    return null;
  }
  try {
    const alert = await api(`/api/alerts/${alertId}/acknowledge`, { method: "POST", body: note ? { note } : {} });
    applyAlert(alert);
    emit("alert", { alert, event: alert.events[alert.events.length - 1] });
    toast(`Alert on ${alert.bed_id} acknowledged`, "ok");
    return alert;
  } catch (err) {
    toast(`Not acknowledged: ${err.message}`, "error");
    return null;
  }
}

export function needsAttention(alert) {
  return alert.state === "active" || alert.acknowledged_at_s === null;
}

function ackButton(alert, extraClass = "") {
  return h("button", {
    class: `ack ${extraClass}`, type: "button", dataset: { alert: String(alert.id) },
    title: can("clinician") ? "Acknowledge this alert" : "Sign in as a clinician to acknowledge",
    onclick: (e) => {
      e.preventDefault();
      e.stopPropagation();
      acknowledge(alert.id);
    },
    text: "Acknowledge",
  });
}

export { ackButton };

function renderBanner() {
  const banner = document.getElementById("alert-banner");
  const open = [...state.alerts.values()].filter((a) => a.acknowledged_at_s === null)
    .sort((a, b) => b.raised_at_s - a.raised_at_s);
  banner.replaceChildren(...open.map((a) => h("div", { class: `banner-item ${a.state}`, dataset: { alert: a.id } },
    h("span", { class: "banner-icon", text: "!" }),
    h("a", { href: `/beds/${encodeURIComponent(a.bed_id)}`, class: "banner-bed", text: a.bed_id }),
    h("span", { text: a.state === "active" ? `AF risk ${pct(a.last_risk)} (peak ${pct(a.peak_risk)})`
      : `cleared at ${formatTime(a.cleared_at_s)}, not acknowledged` }),
    h("span", { class: "muted", text: `raised ${formatTime(a.raised_at_s)}` }),
    ackButton(a))));
  banner.hidden = open.length === 0;
}

// -- the alerts view -------------------------------------------------------------------------------------

let filter = "open";

async function renderView() {
  const view = document.getElementById("view-alerts");
  if (view.hidden) return;
  const params = filter === "open" ? "?acknowledged=false&limit=200" : "?limit=200";
  let page;
  try {
    page = await api(`/api/alerts${params}`);
  } catch (err) {
    view.querySelector(".table-wrap").replaceChildren(h("p", { class: "empty", text: err.message }));
    return;
  }
  const rows = page.items.map((a) => h("tr", { class: a.acknowledged_at_s === null ? "unacked" : "" },
    h("td", {}, h("a", { href: `/beds/${encodeURIComponent(a.bed_id)}`, text: a.bed_id })),
    h("td", {}, h("span", { class: `badge ${a.state === "active" ? "alerting" : "ok"}`, text: a.state })),
    h("td", { text: formatTime(a.raised_at_s, true) }),
    h("td", { class: "num", text: pct(a.peak_risk) }),
    h("td", { class: "num", text: pct(a.last_risk) }),
    h("td", { text: a.cleared_at_s ? formatTime(a.cleared_at_s) : "—" }),
    h("td", { text: a.acknowledged_at_s ? `${a.acknowledged_by} · ${formatTime(a.acknowledged_at_s)}` : "—" }),
    h("td", { class: "note", text: a.ack_note || "" }),
    h("td", {}, a.acknowledged_at_s === null ? ackWithNote(a) : "")));
  const table = h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["Bed", "State", "Raised", "Peak", "Last", "Cleared", "Acknowledged", "Note", ""]
      .map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "empty", text: "No alerts" }))));
  view.querySelector(".table-wrap").replaceChildren(table);
}

function ackWithNote(alert) {
  const input = h("input", { type: "text", maxlength: 500, placeholder: "note (optional)", class: "note-input" });
  return h("form", {
    class: "ack-form",
    onsubmit: async (e) => {
      e.preventDefault();
      if (await acknowledge(alert.id, input.value.trim() || undefined)) renderView();
    },
  }, input, h("button", { type: "submit", class: "ack", text: "Acknowledge" }));
}

export function initAlerts() {
  const view = document.getElementById("view-alerts");
  view.querySelectorAll("[data-filter]").forEach((button) => button.addEventListener("click", () => {
    filter = button.dataset.filter;
    view.querySelectorAll("[data-filter]").forEach((b) => b.classList.toggle("active", b === button));
    renderView();
  }));
  on("snapshot", renderBanner);
  on("alert", () => {
    renderBanner();
    renderView();
  });
  on("user", renderBanner);
  on("view:alerts", renderView);
}
