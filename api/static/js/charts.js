// Canvas plots: the tiles' sparkline and ECG strip, and the bed page's history.
"use strict";

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** Size a canvas to its CSS box at the device's pixel ratio; returns a cleared 2-D context in CSS pixels. */
export function prepare(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, canvas.clientWidth);
  const h = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

/**
 * Risk over the recent past (up to ``spanS``, at least ``minSpanS``): a line broken where windows were unscorable,
 * the alert threshold dashed, the span written in the corner.
 */
export function sparkline(canvas, points, { spanS, threshold, minSpanS = 300 }) {
  const { ctx, w, h } = prepare(canvas);
  if (!points.length) return;
  const t1 = points[points.length - 1].t;
  const span = Math.min(spanS, Math.max(minSpanS, t1 - points[0].t));
  const t0 = t1 - span;
  ctx.fillStyle = css("--muted");
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(span >= 3600 ? `${Math.round(span / 3600)} h` : `${Math.round(span / 60)} min`, 3, 10);
  const x = (t) => ((t - t0) / span) * (w - 2) + 1;
  const y = (r) => h - 2 - r * (h - 4);
  ctx.strokeStyle = css("--line");
  ctx.setLineDash([3, 3]);
  ctx.beginPath();
  ctx.moveTo(0, y(threshold));
  ctx.lineTo(w, y(threshold));
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = css("--accent");
  ctx.beginPath();
  let drawing = false;
  for (const p of points) {
    if (p.t < t0) continue;
    if (p.risk === null || p.risk === undefined) {
      drawing = false;
      ctx.fillStyle = css("--stale");
      ctx.fillRect(x(p.t) - 0.5, h - 3, 1.5, 3);
      continue;
    }
    if (drawing) ctx.lineTo(x(p.t), y(p.risk));
    else ctx.moveTo(x(p.t), y(p.risk));
    drawing = true;
  }
  ctx.stroke();
  const last = points[points.length - 1];
  if (last.risk !== null && last.risk !== undefined) {
    ctx.fillStyle = last.risk >= threshold ? css("--high") : css("--accent");
    ctx.beginPath();
    ctx.arc(x(last.t), y(last.risk), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
}

/** A few seconds of ECG on a monitor-style grid (1 mV = a third of the height). */
export function ecgStrip(canvas, mv, hz) {
  const { ctx, w, h } = prepare(canvas);
  ctx.strokeStyle = "rgba(63, 185, 80, 0.12)";
  ctx.lineWidth = 1;
  if (hz) {
    const seconds = mv.length / hz;
    for (let s = 0; s <= seconds; s += 0.2) {
      const gx = Math.round((s / seconds) * w) + 0.5;
      ctx.beginPath();
      ctx.moveTo(gx, 0);
      ctx.lineTo(gx, h);
      ctx.stroke();
    }
  }
  if (!mv || mv.length < 2) {
    ctx.fillStyle = css("--muted");
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText("no ECG strip for this window", 6, h / 2 + 4);
    return;
  }
  const sorted = [...mv].sort((a, b) => a - b);
  const mid = sorted[Math.floor(sorted.length / 2)];
  const scale = h / 3; // px per mV
  ctx.strokeStyle = css("--ecg");
  ctx.lineWidth = 1.4;
  ctx.beginPath();
  mv.forEach((v, i) => {
    const px = (i / (mv.length - 1)) * (w - 1);
    const py = Math.min(h - 1, Math.max(1, h * 0.6 - (v - mid) * scale));
    if (i === 0) ctx.moveTo(px, py);
    else ctx.lineTo(px, py);
  });
  ctx.stroke();
}

/**
 * The bed page's history: risk (0-100 %) over window time, thresholds, unscorable windows, alert spans and
 * acknowledgements. Returns a function mapping a mouse x to the nearest score, for the tooltip.
 */
export function historyPlot(canvas, scores, { t0, t1, threshold, clearThreshold, spans, marks }) {
  const { ctx, w, h } = prepare(canvas);
  const pad = { l: 48, r: 12, t: 10, b: 26 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const span = Math.max(1, t1 - t0);
  const x = (t) => pad.l + ((t - t0) / span) * pw;
  const y = (r) => pad.t + (1 - r) * ph;
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = css("--muted");
  ctx.strokeStyle = css("--line");
  ctx.lineWidth = 1;
  for (const r of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath();
    ctx.moveTo(pad.l, Math.round(y(r)) + 0.5);
    ctx.lineTo(w - pad.r, Math.round(y(r)) + 0.5);
    ctx.stroke();
    ctx.fillText(`${r * 100}%`, 8, y(r) + 4);
  }
  const ticks = 6;
  for (let i = 0; i <= ticks; i += 1) {
    const t = t0 + (span * i) / ticks;
    const label = new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    ctx.fillText(label, Math.min(w - 40, Math.max(pad.l - 10, x(t) - 16)), h - 8);
  }
  for (const s of spans) {
    ctx.fillStyle = s.acknowledged ? "rgba(210, 153, 34, 0.14)" : "rgba(248, 81, 73, 0.18)";
    const a = x(Math.max(t0, s.from));
    const b = x(Math.min(t1, s.to));
    if (b > a) ctx.fillRect(a, pad.t, b - a, ph);
  }
  for (const [value, color] of [[threshold, css("--high")], [clearThreshold, css("--mid")]]) {
    ctx.strokeStyle = color;
    ctx.setLineDash([6, 4]);
    ctx.beginPath();
    ctx.moveTo(pad.l, y(value));
    ctx.lineTo(w - pad.r, y(value));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.strokeStyle = css("--accent");
  ctx.lineWidth = 1.6;
  ctx.beginPath();
  let drawing = false;
  for (const s of scores) {
    if (s.state !== "ok" || s.risk === null) {
      drawing = false;
      ctx.fillStyle = css("--stale");
      ctx.fillRect(x(s.window_end_s) - 1, pad.t + ph - 6, 2, 6);
      continue;
    }
    if (drawing) ctx.lineTo(x(s.window_end_s), y(s.risk));
    else ctx.moveTo(x(s.window_end_s), y(s.risk));
    drawing = true;
  }
  ctx.stroke();
  for (const m of marks) {
    const mx = x(m.t);
    if (mx < pad.l || mx > w - pad.r) continue;
    ctx.strokeStyle = m.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(mx, pad.t);
    ctx.lineTo(mx, pad.t + ph);
    ctx.stroke();
    ctx.fillStyle = m.color;
    ctx.fillText(m.label, Math.min(w - 60, mx + 3), pad.t + 12);
  }
  return (mouseX) => {
    if (!scores.length) return null;
    const t = t0 + ((mouseX - pad.l) / pw) * span;
    let best = scores[0];
    for (const s of scores) if (Math.abs(s.window_end_s - t) < Math.abs(best.window_end_s - t)) best = s;
    return best;
  };
}

/** Horizontal bars, e.g. the latency histogram: [[label, value]]. */
export function bars(canvas, rows) {
  const { ctx, w, h } = prepare(canvas);
  if (!rows.length) return;
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const rowH = h / rows.length;
  ctx.font = "12px system-ui, sans-serif";
  rows.forEach(([label, value], i) => {
    const yy = i * rowH;
    ctx.fillStyle = css("--muted");
    ctx.fillText(label, 4, yy + rowH / 2 + 4);
    ctx.fillStyle = css("--accent");
    const bw = ((w - 150) * value) / max;
    ctx.fillRect(90, yy + 3, Math.max(value ? 2 : 0, bw), rowH - 6);
    ctx.fillStyle = css("--text");
    ctx.fillText(String(value), 96 + bw, yy + rowH / 2 + 4);
  });
}
