// Admin: users (create, role, disable, new token) and the audit log.
"use strict";

import { api, can, formatTime, h, on, toast } from "./core.js";

const ROLES = ["viewer", "clinician", "data_scientist", "admin"];
let auditBefore = null;

async function renderUsers() {
  const root = document.getElementById("view-admin");
  if (root.hidden) return;
  if (!can("admin")) {
    root.querySelector(".users").replaceChildren(h("p", { class: "empty", text: "Sign in as an admin to manage users." }));
    root.querySelector(".audit").replaceChildren();
    return;
  }
  const users = await api("/api/users");
  const rows = users.map((u) => {
    const role = h("select", { "aria-label": `role of ${u.username}`, onchange: (e) => patch(u, { role: e.target.value }) },
      ...ROLES.map((r) => h("option", { value: r, selected: r === u.role, text: r })));
    return h("tr", { class: u.disabled ? "disabled" : "" },
      h("td", { text: u.username }), h("td", {}, role),
      h("td", { text: [u.has_password ? "password" : "", u.has_token ? "token" : ""].filter(Boolean).join(" + ") || "—" }),
      h("td", { text: u.disabled ? "disabled" : "enabled" }),
      h("td", { text: `${formatTime(u.created_at_s, true)} by ${u.created_by || "—"}` }),
      h("td", { class: "actions" },
        h("button", { type: "button", text: u.disabled ? "Enable" : "Disable", onclick: () => patch(u, { disabled: !u.disabled }) }),
        h("button", { type: "button", text: "New token", onclick: () => rotate(u) })));
  });
  root.querySelector(".users").replaceChildren(h("table", { class: "data" },
    h("thead", {}, h("tr", {}, ...["User", "Role", "Signs in with", "State", "Created", ""].map((t) => h("th", { text: t })))),
    h("tbody", {}, rows)));
  auditBefore = null;
  root.querySelector(".audit").replaceChildren();
  await renderAudit();
}

async function renderAudit() {
  const root = document.getElementById("view-admin");
  const page = await api(`/api/audit?limit=50${auditBefore ? `&before_id=${auditBefore}` : ""}`);
  const rows = page.items.map((a) => h("tr", {},
    h("td", { text: formatTime(a.at_s, true) }), h("td", { text: a.actor }), h("td", { text: a.actor_role || "—" }),
    h("td", { text: a.action }), h("td", { text: a.target || "" }), h("td", { text: a.outcome }),
    h("td", { class: "note", text: Object.keys(a.detail).length ? JSON.stringify(a.detail) : "" }),
    h("td", { text: a.remote || "" })));
  let table = root.querySelector(".audit table");
  if (!table) {
    table = h("table", { class: "data" }, h("thead", {}, h("tr", {},
      ...["When", "Who", "Role", "Action", "Target", "Outcome", "Detail", "From"].map((t) => h("th", { text: t })))),
    h("tbody"));
    root.querySelector(".audit").replaceChildren(table);
  }
  table.querySelector("tbody").append(...rows);
  auditBefore = page.next_before_id;
  const more = root.querySelector(".audit-more");
  more.hidden = !auditBefore;
}

async function patch(user, body) {
  try {
    await api(`/api/users/${user.id}`, { method: "PATCH", body });
    toast(`${user.username} updated`, "ok");
  } catch (err) {
    toast(`not changed: ${err.message}`, "error");
  }
  renderUsers();
}

function showSecret(text) {
  const out = document.querySelector("#view-admin .secret");
  out.hidden = false;
  out.replaceChildren(h("strong", { text: "Shown only now — copy it: " }), h("code", { text }));
}

async function rotate(user) {
  try {
    const result = await api(`/api/users/${user.id}/token`, { method: "POST" });
    showSecret(`${user.username}: ${result.token}`);
  } catch (err) {
    toast(`no token: ${err.message}`, "error");
  }
  renderUsers();
}

async function create(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { username: form.get("username"), role: form.get("role"), with_token: form.get("with_token") === "on" };
  if (form.get("password")) body.password = form.get("password");
  try {
    const result = await api("/api/users", { method: "POST", body });
    toast(`user ${result.user.username} created`, "ok");
    if (result.token) showSecret(`${result.user.username}: ${result.token}`);
    event.target.reset();
  } catch (err) {
    toast(`not created: ${err.message}`, "error");
  }
  renderUsers();
}

export function initAdmin() {
  const root = document.getElementById("view-admin");
  const select = root.querySelector("select[name=role]");
  select.append(...ROLES.map((r) => h("option", { value: r, text: r })));
  root.querySelector("form.new-user").addEventListener("submit", create);
  root.querySelector(".audit-more").addEventListener("click", renderAudit);
  on("view:admin", renderUsers);
  on("user", renderUsers);
}
