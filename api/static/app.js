// The holmes dashboard: live bed grid over /ws/scores, bed pages, alerts, operations and admin views.
"use strict";

import { initAdmin } from "./js/admin.js";
import { initAlerts } from "./js/alerts.js";
import { initBed, showBed } from "./js/bed.js";
import {
  api, connect, emit, h, loadSession, on, setSession, signIn, signInWithToken, signOut, state, toast,
} from "./js/core.js";
import { initGrid } from "./js/grid.js";
import { initOps } from "./js/ops.js";

const VIEWS = ["grid", "bed", "alerts", "models", "ensemble", "admin"];

// -- routing (the server serves this page on every view's path) -----------------------------------------------

function route() {
  const path = location.pathname;
  let view = "grid";
  let bedId = null;
  if (path.startsWith("/beds/")) {
    view = "bed";
    bedId = decodeURIComponent(path.slice("/beds/".length));
  } else if (VIEWS.includes(path.slice(1))) {
    view = path.slice(1);
  }
  for (const name of VIEWS) document.getElementById(`view-${name}`).hidden = name !== view;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view
    || (view === "bed" && a.dataset.view === "grid")));
  if (view === "bed") showBed(bedId);
  emit(`view:${view}`);
}

function navigate(href) {
  if (href === location.pathname) return;
  history.pushState({}, "", href);
  route();
  window.scrollTo(0, 0);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='/']");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || link.target) return;
  if (link.getAttribute("href").startsWith("/docs")) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", route);

// -- sign-in --------------------------------------------------------------------------------------------------

function renderUser() {
  const box = document.getElementById("user");
  if (state.user) {
    box.replaceChildren(
      h("span", { class: "who", text: state.user.username }),
      h("span", { class: "role", text: state.user.role }),
      h("button", { type: "button", id: "sign-out", text: "Sign out", onclick: async () => {
        await signOut();
        if (state.config.reads_need_token) location.reload();
      } }));
  } else {
    box.replaceChildren(h("button", { type: "button", id: "sign-in", text: "Sign in", onclick: openSignIn }));
  }
  document.body.dataset.role = state.user ? state.user.role : "anonymous";
}

function openSignIn() {
  const dialog = document.getElementById("sign-in-dialog");
  dialog.querySelector(".error").textContent = "";
  if (!dialog.open) dialog.showModal();
  dialog.querySelector("input[name=username]").focus();
}

function initSignIn() {
  const dialog = document.getElementById("sign-in-dialog");
  const form = dialog.querySelector("form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      if (data.get("token")) await signInWithToken(String(data.get("token")).trim());
      else await signIn(String(data.get("username")), String(data.get("password")));
      form.reset();
      dialog.close();
      toast(`Signed in as ${state.user.username} (${state.user.role})`, "ok");
      if (!state.connected) connect();
    } catch (err) {
      dialog.querySelector(".error").textContent = err.status === 401 ? "Wrong username, password or token." : err.message;
    }
  });
  dialog.querySelector(".cancel").addEventListener("click", () => dialog.close());
  on("need-sign-in", openSignIn);
  on("user", renderUser);
}

// -- connection pill ------------------------------------------------------------------------------------------

on("connection", ({ state: s, text }) => {
  document.getElementById("conn").className = `conn ${s}`;
  document.getElementById("conn-text").textContent = text;
});

async function start() {
  loadSession();
  try {
    Object.assign(state.config, await api("/api/ui-config"));
  } catch (err) {
    toast(`server configuration not loaded: ${err.message}`, "error");
  }
  if (state.user) {
    try {
      const me = await api("/api/auth/me");
      if (!me.username) setSession(null);
    } catch {
      setSession(null);
    }
  }
  document.getElementById("stale-after").textContent = `${state.config.stale_after_s} s`;
  document.getElementById("alert-rule").textContent =
    `alert: ${state.config.alert_raise_windows} windows ≥ ${Math.round(state.config.alert_threshold * 100)} %, `
    + `clears after ${state.config.alert_clear_windows} < ${Math.round(state.config.alert_clear_threshold * 100)} %`;
  initGrid();
  initAlerts();
  initBed();
  initOps();
  initAdmin();
  initSignIn();
  renderUser();
  route();
  if (state.config.reads_need_token && !state.user) openSignIn();
  else connect();
}

start();
