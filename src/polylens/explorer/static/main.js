// The explorer page: the shell (the input, the network diagram, the state in the URL) and the views
// of every registered lens, listed by the model payload ("lenses") in registry order. A view is an
// ES module in its lens's folder, imported as "polylens-lens/<lens>/<module>", exporting
// mount(root, app, lens) -> hooks; lenses without a module get the generic view (their report
// section). The shell calls the hooks a view returns:
//   pending()                       the input is changing (mark stale)
//   input(input, fwd)               a new input is on screen (its forward payload: fwd)
//   eps(eps, final) / epsSettled(eps)  the radius moves / has settled
//   neuron(key) / closeNeuron()     a neuron was opened (diagram, URL) / closed
//   model(model)                    the model changed (a rename)
// A hook may return a promise; the shell waits for the input and eps hooks before it refreshes the
// diagram's bounds, so the views' LP checks come first.

import { h, fill, fmt, debounce, channel, isAbort } from "polylens/util.js";
import { liveSource, staticSource } from "polylens/datasource.js";
import { Diagram } from "polylens/diagram.js";
import { InputView } from "polylens/inputview.js";
import { mount as mountGeneric } from "polylens/generic.js";

const $ = (id) => document.getElementById(id);

// -- URL state -----------------------------------------------------------------------------------

function encodeX(x) {
  return x.map((v) => Math.round(Math.max(0, Math.min(1, v)) * 255).toString(16).padStart(2, "0")).join("");
}

function decodeX(hex, n) {
  if (!hex || hex.length !== 2 * n || !/^[0-9a-f]+$/i.test(hex)) return null;
  const out = [];
  for (let i = 0; i < n; i++) out.push(parseInt(hex.slice(2 * i, 2 * i + 2), 16) / 255);
  return out;
}

function readHash() {
  const p = new URLSearchParams(location.hash.replace(/^#/, ""));
  return Object.fromEntries(p.entries());
}

// Keys of the URL the shell owns; any other key belongs to a view (app.param / app.setParam).
const SHELL_KEYS = new Set(["x", "s", "eps", "n", "d", "m", "r"]);

// -- the app -----------------------------------------------------------------------------------

class App {
  constructor(config, src) {
    this.config = config;
    this.src = src;
    this.state = {sample: null, x: null, from: null, eps: 0, neuron: null,
                  filters: {digit: "all", mis: false, nonrobust: false}};
    this.params = {};
    this.fwd = null;
    this.views = [];
    this.statusFilter = null;
    this.ch = {fwd: channel(), bounds: channel(), status: channel()};
    this.slow = debounce(() => this.refreshSlow(), 120);
    this.epsChanged = debounce(() => this.refreshEps(), 90);
  }

  // -- what views use ----------------------------------------------------------------------------

  /** A lens's payload: lens(name, kind, params, signal). */
  lens(name, kind, params, signal) { return this.src.lens(name, kind, params, signal); }

  /**
   * Ask a background payload until it is ready: render(payload) for each answer (status "running",
   * then "ready" or "error"); a failed request is drawn as an error by render({status: "error"}).
   */
  poll(name, kind, params, render, every = 1500) {
    const go = async () => {
      try {
        const p = await this.lens(name, kind, params);
        render(p);
        if (p && (p.status === "running" || p.status === "idle")) setTimeout(go, every);
      } catch (err) {
        render({status: "error", error: err.message});
      }
    };
    go();
  }

  /** The input on screen as a request names it: {sample: i} or {x: [...]}. */
  input() { return this.state.x ? {x: this.state.x} : {sample: this.state.sample}; }

  /** A view's own key in the URL (e.g. the trace's class "c"). */
  param(key) { return this.params[key]; }

  setParam(key, value) {
    if (value === null || value === undefined) delete this.params[key]; else this.params[key] = String(value);
    this.writeHash();
  }

  /** A view offers the input view's status filter: {label, title, fetch(eps, signal) -> {codes, counts}}. */
  setStatusFilter(filter) {
    this.statusFilter = filter;
    this.inputView.enableStatusFilter(filter);
  }

  error(err) {
    if (isAbort(err)) return;
    fill($("errors"), h("div", {class: "error", role: "alert"}, err.message || String(err)));
    setTimeout(() => fill($("errors")), 6000);
  }

  emit(hook, ...args) {
    const out = [];
    for (const v of this.views) {
      if (typeof v[hook] !== "function") continue;
      try {
        out.push(Promise.resolve(v[hook](...args)).catch((err) => this.error(err)));
      } catch (err) { this.error(err); }
    }
    return Promise.all(out);
  }

  // -- start -------------------------------------------------------------------------------------

  async start() {
    this.model = await this.src.model();
    this.samples = this.model.n_samples > 0 ? await this.src.samples() : {indices: [], labels: [], predictions: []};
    this._header();
    this.tooltip = $("tooltip");
    this.diagram = new Diagram($("diagram"), this.tooltip, {kind: "network", onNeuron: (k) => this.openNeuron(k)});
    this.inputView = new InputView($("input-view"), this.model, this.samples, {
      canPaint: this.src.live,
      onSample: (i) => this.setSample(i),
      onPaint: (x) => this.paint(x),
      onReset: () => this.setSample(this.state.from ?? this.samples.indices[0] ?? null),
      onFilter: (f) => { this.state.filters = {...f}; this.writeHash(); this.refreshStatus(); },
    });
    // State from the URL.
    const q = readHash();
    for (const [k, v] of Object.entries(q)) if (!SHELL_KEYS.has(k)) this.params[k] = v;
    const d = this.model.input_shape.reduce((a, b) => a * b, 1);
    const x = decodeX(q.x, d);
    this.state.eps = q.eps !== undefined && Number.isFinite(+q.eps) ? Math.max(0, Math.min(1, +q.eps)) : this.model.eps;
    if (this.src.grid) this.state.eps = this.src.grid.reduce((b, e) => (Math.abs(e - this.state.eps) < Math.abs(b - this.state.eps) ? e : b));
    this.state.filters = {digit: q.d ?? "all", mis: q.m === "1", nonrobust: q.r === "1"};
    const si = q.s !== undefined && /^\d+$/.test(q.s) ? +q.s : null;
    const known = (i) => i !== null && this.samples.indices.includes(i);
    if (x && this.src.live) {
      this.state.x = x;
      this.state.from = known(si) ? si : null;
    } else {
      this.state.sample = known(si) ? si : (this.samples.indices[0] ?? null);
      if (this.state.sample === null) this.state.x = new Array(d).fill(0);
    }
    // The views of the lenses, in registry order.
    const host = document.querySelector("main");
    for (const lens of this.model.lenses || []) {
      const root = h("div", {class: "lens", id: `lens-${lens.name}`, "data-lens": lens.name});
      host.appendChild(root);
      try {
        const mod = lens.module ? await import(`polylens-lens/${lens.name}/${lens.module}`) : {mount: mountGeneric};
        this.views.push(mod.mount(root, this, lens) || {});
      } catch (err) {
        fill(root, h("section", {class: "panel wide"}, h("h2", {}, lens.title),
          h("div", {class: "bad"}, `The view of ${lens.name} could not load: ${err.message}`)));
      }
    }
    this.inputView.setFilters(this.state.filters);
    await this.refreshForward();
    this.refreshStatus();
    if (q.n) this.openNeuron(q.n);
    window.addEventListener("hashchange", () => this.onHashChange());
    document.body.dataset.ready = "1";
  }

  _header() {
    const m = this.model;
    fill($("model-info"),
      h("span", {class: "arch"}, m.architecture), ` · ${m.activation} · ${m.n_params} parameters`,
      m.test_accuracy !== null ? ` · test accuracy ${fmt(100 * m.test_accuracy, 2)}%` : "",
      ` · ${m.source}`);
    fill($("mode"), this.src.live
      ? h("span", {class: "mode-live", id: "mode-badge"}, "live")
      : h("span", {class: "mode-static", id: "mode-badge"}, "static export"));
    fill($("mode-note"), this.src.live ? "" :
      `Precomputed at export for ${m.n_samples} test samples at ε ∈ {${this.src.grid.map((e) => fmt(e, 3)).join(", ")}}: ` +
      "the certificates, bounds and traces shown were computed by polylens then. Painting new inputs and live LP checks need " +
      "the live server: polylens serve MODEL.");
  }

  writeHash() {
    const p = new URLSearchParams();
    if (this.state.x) {
      p.set("x", encodeX(this.state.x));
      if (this.state.from !== null) p.set("s", this.state.from);
    } else if (this.state.sample !== null) p.set("s", this.state.sample);
    p.set("eps", String(+this.state.eps.toFixed(4)));
    if (this.state.neuron) p.set("n", this.state.neuron);
    for (const [k, v] of Object.entries(this.params)) p.set(k, v);
    const f = this.state.filters;
    if (f.digit !== "all") p.set("d", f.digit);
    if (f.mis) p.set("m", "1");
    if (f.nonrobust) p.set("r", "1");
    const hash = `#${p.toString()}`;
    this._ownHash = hash;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  onHashChange() {
    if (location.hash === this._ownHash) return;
    location.reload();
  }

  // -- actions ----------------------------------------------------------------------------------

  setSample(i) {
    if (i === null || i === undefined) return;
    this.state.sample = i;
    this.state.x = null;
    this.state.from = i;
    this.refreshForward();
  }

  paint(x) {
    if (this.state.sample !== null) this.state.from = this.state.sample;
    this.state.sample = null;
    this.state.x = x;
    this.refreshForward({painting: true});
  }

  setEps(eps, final) {
    this.state.eps = eps;
    this.emit("eps", eps, final);
    this.writeHash();
    if (final) {  // released: check this radius now; while dragging, wait for a pause
      this.epsChanged.cancel();
      this.refreshEps();
    } else {
      this.epsChanged();
    }
  }

  /** The neuron a key names, as {layer, neuron} (from the model payload), or null for no such neuron. */
  neuronOf(key) {
    for (const layer of this.model.layers) {
      const j = layer.neurons.findIndex((n) => n.key === key);
      if (j >= 0) return {layer: layer.layer, neuron: j};
    }
    return null;
  }

  openNeuron(key) {
    if (!this.neuronOf(key)) return;
    this.state.neuron = key;
    this.diagram.setSelected(key);
    this.writeHash();
    this.emit("neuron", key);
  }

  closeNeuron() {
    this.state.neuron = null;
    this.diagram.setSelected(null);
    this.writeHash();
    this.emit("closeNeuron");
  }

  async rename(layer, j, name) {
    const r = await this.src.rename(layer, j, name);
    this.model = await this.src.model();
    this.inputView.model = this.model;
    if (this.fwd) this.diagram.render(this.model, this.fwd);
    this.diagram.setSelected(this.state.neuron);
    await this.emit("model", this.model);
    return r;
  }

  // -- refreshers -------------------------------------------------------------------------------

  async refreshForward(opts = {}) {
    const req = this.ch.fwd.start();
    let fwd;
    try {
      fwd = await this.src.forward(this.input(), req.signal);
    } catch (err) {
      return this.error(err);
    }
    if (req.seq !== req.current()) return;
    this.fwd = fwd;
    this.diagram.bounds = null;
    this.diagram.render(this.model, fwd);
    const tag = this.state.x ? `drawn:${encodeX(this.state.x)}` : `sample:${this.state.sample}`;
    $("diagram").dataset.input = tag;
    $("diagram-legend-count").textContent = this._legendCount(fwd);
    this.inputView.show(fwd, {sample: this.state.x ? this.state.from : this.state.sample, drawn: !!this.state.x});
    this.writeHash();
    document.body.dataset.input = tag;
    this.emit("pending");
    if (opts.painting) this.slow(); else { this.slow.cancel(); this.refreshSlow(); }
  }

  _legendCount(fwd) {
    const parts = fwd.diagram.columns.slice(1, -1).filter((c) => c.more).map((c) => `layer ${c.layer}: ${c.shown.length} of ${c.width} neurons (largest |activation|)`);
    const e = fwd.diagram.edges.map((e) => `${e.src.length} of ${e.total}`).join(", ");
    return `${parts.length ? parts.join("; ") + "; " : ""}edges drawn per layer: ${e}`;
  }

  // The views first (their LP checks), then the tooltip bounds, which would compete for the server's CPU.
  async refreshSlow() {
    await this.emit("input", this.input(), this.fwd);
    this.refreshBounds();
  }

  async refreshEps() {
    const settled = this.emit("epsSettled", this.state.eps);
    this.refreshStatus();
    await settled;
    this.refreshBounds();
  }

  async refreshBounds() {
    const req = this.ch.bounds.start();
    try {
      const b = await this.src.bounds(this.input(), this.state.eps, req.signal);
      if (req.seq !== req.current()) return;
      this.diagram.setBounds(b);
    } catch (err) { this.error(err); }
  }

  async refreshStatus() {
    if (!this.statusFilter || !this.state.filters.nonrobust || !this.model.n_samples) {
      this.inputView.setRobust(null);
      return;
    }
    const req = this.ch.status.start();
    this.inputView.setRobust(null, true);
    try {
      const r = await this.statusFilter.fetch(this.state.eps, req.signal);
      if (req.seq !== req.current()) return;
      this.inputView.setRobust(r);
      const list = this.inputView.matching();
      if (this.state.sample !== null && list.length && !list.includes(this.state.sample)) this.setSample(list[0]);
    } catch (err) { this.error(err); }
  }
}

export async function boot() {
  const config = window.POLYLENS_CONFIG;
  if (!config) {
    fill($("errors"), h("div", {class: "error"}, "config.js did not load: open this page through `polylens serve MODEL` or a static export."));
    return;
  }
  const src = config.mode === "live" ? liveSource(config) : staticSource(config);
  const app = new App(config, src);
  window.polylensApp = app;
  try {
    await app.start();
  } catch (err) {
    fill($("errors"), h("div", {class: "error", role: "alert"}, `The explorer could not start: ${err.message}`));
    throw err;
  }
}
