// Small DOM, SVG and formatting helpers shared by every view. No arithmetic on the network here:
// values arrive computed from the Python side; these helpers only draw them.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an HTML element: h("div", {class: "x", onclick: f}, child, "text", ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Create an SVG element with attributes and children. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** Replace the children of el. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Format a number for display: fixed digits, "–" for null/undefined. */
/** Draw a background payload that is not ready: "running" (a muted line with id ``statusId``), an
 * error or an unavailable note. Returns true when it drew something (the caller stops there). */
export function notReady(root, head, payload, statusId, message) {
  if (!payload || payload.status === "running") {
    fill(root, head, h("div", {class: "muted", id: statusId}, message));
    return true;
  }
  if (payload.status === "error" || payload.available === false) {
    fill(root, head, h("div", {class: "bad"}, payload.error || payload.note));
    return true;
  }
  return false;
}

export function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === Infinity) return "+∞";
  if (v === -Infinity) return "−∞";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2).replace("-", "−");
  return v.toFixed(digits).replace("-", "−");
}

export function signed(v, digits = 3) {
  if (v === null || v === undefined) return "–";
  return (v >= 0 ? "+" : "") + fmt(v, digits);
}

/** Blue for positive, red for negative (diverging), intensity by |v| / vmax in [0, 1]; the report's colour
 * language: blue is ink / pushes up, red is blank / pushes down. */
export function diverging(v, vmax) {
  const t = vmax > 0 ? Math.max(-1, Math.min(1, v / vmax)) : 0;
  const a = Math.abs(t);
  // white -> blue (31, 119, 180) or white -> red (214, 39, 40)
  const [r, g, b] = t >= 0 ? [31, 119, 180] : [214, 39, 40];
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

/** Grey level for a pixel value in [0, 1]: 0 white paper, 1 black ink. */
export function ink(v) {
  const c = Math.round(255 * (1 - Math.max(0, Math.min(1, v ?? 0))));
  return `rgb(${c},${c},${c})`;
}

export function maxAbs(values) {
  let m = 0;
  for (const v of values) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
  return m;
}

/**
 * An image as an SVG of rects (one per pixel). values: flat row-major list; shape [H, W] (a 1-D
 * shape draws one row). opts.mode "ink" (grey) or "diverging" (blue +, red - around 0, vmax), opts.size
 * (px of the longer side), opts.title per pixel (i => string), opts.cls class of the svg.
 */
export function imageSvg(values, shape, opts = {}) {
  const [H, W] = shape.length === 2 ? shape : [1, shape[0]];
  if (H * W > 400 && !opts.title) return imageCanvas(values, H, W, opts);
  const size = opts.size ?? 84;
  const cell = size / Math.max(H, W);
  const vmax = opts.vmax ?? maxAbs(values);
  const root = s("svg", {class: `img ${opts.cls ?? ""}`, width: cell * W, height: cell * H,
                         viewBox: `0 0 ${cell * W} ${cell * H}`, role: "img", "aria-label": opts.label ?? "image"});
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) {
      const k = i * W + j;
      const v = values[k];
      const fillc = opts.mode === "diverging" ? diverging((v ?? 0), vmax) : ink(v);
      const r = s("rect", {x: j * cell, y: i * cell, width: cell + 0.02, height: cell + 0.02, fill: fillc});
      if (opts.title) r.appendChild(s("title", {}, opts.title(k, v)));
      root.appendChild(r);
    }
  }
  root.appendChild(s("rect", {x: 0, y: 0, width: cell * W, height: cell * H, fill: "none", class: "img-border"}));
  return root;
}

/** Wait ms milliseconds, then call fn with the latest arguments (the classic debounce). */
export function debounce(fn, ms) {
  let t = null;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

/** A request channel: each call aborts the previous one still in flight (latest wins). */
export function channel() {
  let ctrl = null;
  let seq = 0;
  return {
    start() {
      if (ctrl) ctrl.abort();
      ctrl = new AbortController();
      seq += 1;
      return {signal: ctrl.signal, seq, current: () => seq};
    },
    abort() { if (ctrl) ctrl.abort(); ctrl = null; },
  };
}

export function isAbort(err) {
  return err && (err.name === "AbortError" || err.aborted === true);
}

/** A status badge: verified / falsified / unknown / timeout / computing. */
export function badge(status, text) {
  return h("span", {class: `badge badge-${status}`, "data-status": status}, text ?? status);
}

/** A small horizontal bar chart of signed values with labels (HTML). */
export function barList(items, opts = {}) {
  const vmax = opts.vmax ?? maxAbs(items.map((it) => it.value));
  return h("div", {class: "barlist"}, items.map((it) =>
    h("div", {class: "bar-row", title: it.title ?? ""},
      h("span", {class: "bar-label"}, it.label),
      h("span", {class: "bar-track"},
        h("span", {class: `bar ${it.value >= 0 ? "bar-pos" : "bar-neg"} ${it.cls ?? ""}`,
                   style: `width:${vmax > 0 ? (50 * Math.min(1, Math.abs(it.value ?? 0) / vmax)).toFixed(1) : 0}%;` +
                          (it.value >= 0 ? "left:50%;" : `right:50%;`)})),
      h("span", {class: "bar-value"}, it.text ?? signed(it.value)))));
}

/** Draw a plotly figure sized to its container, and keep it sized when the container changes. */
export function plot(div, traces, layout) {
  if (!window.Plotly || !div.isConnected) return;
  const width = Math.max(200, div.clientWidth || div.parentElement.clientWidth);
  window.Plotly.react(div, traces, {...layout, width, autosize: false}, {displayModeBar: false, responsive: false});
  if (!div._polylensObserved && window.ResizeObserver) {
    div._polylensObserved = true;
    let last = width;
    new ResizeObserver(() => {
      const w = Math.max(200, div.clientWidth);
      if (Math.abs(w - last) > 2 && div.isConnected) {
        last = w;
        window.Plotly.relayout(div, {width: w});
      }
    }).observe(div);
  }
}

/** A large image (e.g. a 28x28 original) as a canvas: one pixel per value, scaled up without smoothing. */
function imageCanvas(values, H, W, opts) {
  const size = opts.size ?? 84;
  const c = document.createElement("canvas");
  c.width = W;
  c.height = H;
  c.className = `img img-canvas ${opts.cls ?? ""}`;
  c.style.width = `${(size * W) / Math.max(H, W)}px`;
  c.style.height = `${(size * H) / Math.max(H, W)}px`;
  c.setAttribute("role", "img");
  c.setAttribute("aria-label", opts.label ?? "image");
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(W, H);
  const vmax = opts.vmax ?? maxAbs(values);
  for (let k = 0; k < H * W; k++) {
    const v = values[k] ?? 0;
    const col = opts.mode === "diverging" ? diverging(v, vmax) : ink(v);
    const [r, g, b] = col.slice(4, -1).split(",").map(Number);
    img.data.set([r, g, b, 255], 4 * k);
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
