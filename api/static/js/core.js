// Shared state of the page: configuration, sign-in, REST calls, the live WebSocket feed, small helpers.
"use strict";

const SESSION_KEY = "holmes.session";
const RECONNECT_MAX_S = 10;

export const state = {
  config: {
    hop_s: 5, stale_after_s: 10, reads_need_token: false, alert_threshold: 0.7, alert_clear_threshold: 0.5,
    trend_window_s: 3600, env: "dev",
  },
  /** bed_id -> BedPublic as last known (``latest`` replaced by each new score) */
  beds: new Map(),
  /** bed_id -> [{t, risk, state}] oldest first, the sparkline's hour */
  trends: new Map(),
  /** alert id -> AlertPublic */
  alerts: new Map(),
  user: null, // {token, username, role}
  clockOffsetS: 0, // server clock minus browser clock
  connected: false,
};

const listeners = new Map();

/** Subscribe to an event: "snapshot", "score", "alert", "connection", "user", "tick". */
export function on(name, fn) {
  if (!listeners.has(name)) listeners.set(name, []);
  listeners.get(name).push(fn);
}

export function emit(name, payload) {
  for (const fn of listeners.get(name) || []) {
    try {
      fn(payload);
    } catch (err) {
      console.error(`listener of ${name} failed`, err);
    }
  }
}

export const serverNow = () => Date.now() / 1000 + state.clockOffsetS;

// -- sign-in -------------------------------------------------------------------------------------------

export function loadSession() {
  try {
    state.user = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    state.user = null;
  }
}

export function setSession(user) {
  state.user = user;
  if (user) sessionStorage.setItem(SESSION_KEY, JSON.stringify(user));
  else sessionStorage.removeItem(SESSION_KEY);
  emit("user", user);
}

/** Whether the signed-in user holds one of ``roles`` (admin always does). */
export function can(...roles) {
  const role = state.user && state.user.role;
  return Boolean(role) && (role === "admin" || roles.includes(role));
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

/** fetch() with the bearer token; JSON in and out; throws ApiError with the server's detail. */
export async function api(path, { method = "GET", body, form } = {}) {
  const headers = {};
  if (state.user) headers.Authorization = `Bearer ${state.user.token}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  if (response.status === 401 && state.user) {
    setSession(null); // expired or revoked
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) throw new ApiError(response.status, (data && data.detail) || response.statusText);
  return data;
}

export async function signIn(username, password) {
  const session = await api("/api/auth/login", { method: "POST", body: { username, password } });
  setSession({ token: session.token, username: session.user.username, role: session.user.role });
}

export async function signInWithToken(token) {
  const me = await fetch("/api/auth/me", { headers: { Authorization: `Bearer ${token}` } });
  if (!me.ok) throw new ApiError(me.status, "this token is not valid");
  const who = await me.json();
  setSession({ token, username: who.username, role: who.role });
}

export async function signOut() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch {
    // an API token has no session to end; forgetting it here is enough
  }
  setSession(null);
}

// -- live feed ------------------------------------------------------------------------------------------

let socket = null;
let reconnectDelayS = 0.5;

function applyScore(score) {
  const bed = state.beds.get(score.bed_id);
  // Scores may arrive twice or out of order (replays, snapshot vs live): keep the newest window.
  if (bed && bed.latest.window_end_s > score.window_end_s) return false;
  const next = bed ? { ...bed } : { bed_id: score.bed_id, first_seen_s: score.received_at_s, windows_lost: 0,
    alert: null };
  next.latest = score;
  next.last_seen_s = Math.max(score.received_at_s, (bed && bed.last_seen_s) || 0);
  state.beds.set(score.bed_id, next);
  const trend = state.trends.get(score.bed_id) || [];
  if (!trend.length || trend[trend.length - 1].t < score.window_end_s) {
    trend.push({ t: score.window_end_s, risk: score.state === "ok" ? score.risk : null, state: score.state });
    const cutoff = score.window_end_s - state.config.trend_window_s;
    while (trend.length && trend[0].t <= cutoff) trend.shift();
    state.trends.set(score.bed_id, trend);
  }
  return true;
}

export function applyAlert(alert) {
  state.alerts.set(alert.id, alert);
  const bed = state.beds.get(alert.bed_id);
  if (bed) {
    const needsAttention = alert.state === "active" || alert.acknowledged_at_s === null;
    if (needsAttention) bed.alert = alert;
    else if (bed.alert && bed.alert.id === alert.id) bed.alert = null;
  }
}

export async function loadTrends() {
  try {
    const series = await api("/api/trends");
    for (const s of series) {
      state.trends.set(s.bed_id, s.window_end_s.map((t, i) => ({ t, risk: s.risk[i], state: s.state[i] })));
    }
    emit("trends");
  } catch (err) {
    console.warn("trends not loaded", err);
  }
}

export function connect() {
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = state.user ? `?token=${encodeURIComponent(state.user.token)}` : "";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/scores${query}`);
  socket = ws;
  emit("connection", { state: "connecting", text: reconnectDelayS > 0.5 ? "reconnecting…" : "connecting…" });
  ws.onopen = () => {
    reconnectDelayS = 0.5;
    state.connected = true;
    emit("connection", { state: "live", text: "live" });
  };
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (typeof msg.sent_at_s === "number") state.clockOffsetS = msg.sent_at_s - Date.now() / 1000;
    if (msg.type === "snapshot") {
      if (typeof msg.stale_after_s === "number") state.config.stale_after_s = msg.stale_after_s;
      for (const bed of msg.beds) {
        const known = state.beds.get(bed.bed_id);
        if (!known || known.latest.window_end_s <= bed.latest.window_end_s) state.beds.set(bed.bed_id, bed);
      }
      for (const alert of msg.alerts || []) state.alerts.set(alert.id, alert);
      emit("snapshot", msg);
      loadTrends();
    } else if (msg.type === "score") {
      if (applyScore(msg.score)) emit("score", msg.score);
    } else if (msg.type === "alert") {
      applyAlert(msg.alert);
      emit("alert", msg);
    }
  };
  ws.onclose = (event) => {
    if (socket !== ws) return;
    state.connected = false;
    if (event.code === 1008) {
      emit("connection", { state: "offline", text: "sign in to see beds" });
      emit("need-sign-in");
      return;
    }
    const delayS = reconnectDelayS * (0.8 + 0.4 * Math.random());
    reconnectDelayS = Math.min(reconnectDelayS * 2, RECONNECT_MAX_S);
    emit("connection", { state: "offline", text: `offline · retry in ${Math.ceil(delayS)} s` });
    setTimeout(() => {
      if (socket === ws) connect();
    }, delayS * 1000);
  };
  ws.onerror = () => ws.close();
}

// -- formatting -----------------------------------------------------------------------------------------

export function formatAge(ageS) {
  const s = Math.max(0, Math.floor(ageS));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

export function formatTime(epochS, withDate = false) {
  if (epochS === null || epochS === undefined) return "—";
  const d = new Date(epochS * 1000);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return withDate ? `${d.toLocaleDateString()} ${time}` : time;
}

export const pct = (risk) => (risk === null || risk === undefined ? "—" : `${Math.round(risk * 100)}%`);

/** low / mid / high by the alert threshold, for colours. */
export function level(risk) {
  if (risk === null || risk === undefined) return "none";
  if (risk >= state.config.alert_threshold) return "high";
  if (risk >= Math.min(0.3, state.config.alert_clear_threshold)) return "mid";
  return "low";
}

export function quality(score) {
  const q = score.quality;
  const value = q === null || q === undefined ? "—" : q.toFixed(2);
  if (score.state !== "ok") return { label: "signal poor", cls: "poor", title: `signal-quality index ${value}` };
  if (q === null || q === undefined) return { label: "signal —", cls: "none", title: "no signal-quality index" };
  const title = `signal-quality index ${value} (0 = unusable, 1 = clean)`;
  if (q >= 0.7) return { label: "signal good", cls: "good", title };
  if (q >= 0.4) return { label: "signal fair", cls: "fair", title };
  return { label: "signal poor", cls: "poor", title };
}

/** Age of a bed's latest score at the api, and whether that makes it stale (no score for two hops). */
export function staleness(bed, now = serverNow()) {
  const seen = Math.max(bed.last_seen_s || 0, (bed.latest && bed.latest.received_at_s) || 0);
  const ageS = Math.max(0, now - seen);
  return { ageS, stale: ageS > state.config.stale_after_s };
}

/** Build an element: h("td", {class: "x", text: "y"}, child...). Never uses innerHTML with data. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = value;
    else if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

export function toast(text, kind = "info") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind}`, role: "status", text });
  box.append(el);
  setTimeout(() => el.remove(), 6000);
}
