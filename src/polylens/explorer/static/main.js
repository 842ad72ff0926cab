// The explorer page: wires the views to a data source (live server or static export) and keeps the
// state (input, eps, open neuron, trace class, filters) in the URL hash so any view can be linked.

import { h, fill, fmt, debounce, channel, isAbort } from "polylens/util.js";
import { liveSource, staticSource } from "polylens/datasource.js";
import { Diagram } from "polylens/diagram.js";
import { InputView } from "polylens/inputview.js";
import { RobustView } from "polylens/robust.js";
import { NeuronPanel } from "polylens/neuron.js";
import { TraceView } from "polylens/trace.js";
import { renderSignatures, renderPrototypes } from "polylens/analyses.js";

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

// -- the app -----------------------------------------------------------------------------------

class App {
  constructor(config, src) {
    this.config = config;
    this.src = src;
    this.state = {sample: null, x: null, from: null, eps: 0, neuron: null, target: null,
                  filters: {digit: "all", mis: false, nonrobust: false}};
    this.fwd = null;
    this.ch = {fwd: channel(), bounds: channel(), cert: channel(), trace: channel(), robust: channel(), neuron: channel()};
    this.slow = debounce(() => this.refreshSlow(), 120);
    this.epsChanged = debounce(() => this.refreshEps(), 90);
  }

  async start() {
    this.model = await this.src.model();
    this.samples = this.model.n_samples > 0 ? await this.src.samples() : {indices: [], labels: [], predictions: []};
    this._header();
    const tip = $("tooltip");
    this.diagram = new Diagram($("diagram"), tip, {kind: "network", onNeuron: (k) => this.openNeuron(k)});
    this.input = new InputView($("input-view"), this.model, this.samples, {
      canPaint: this.src.live,
      onSample: (i) => this.setSample(i),
      onPaint: (x) => this.paint(x),
      onReset: () => this.setSample(this.state.from ?? this.samples.indices[0] ?? null),
      onFilter: (f) => { this.state.filters = {...f}; this.writeHash(); this.refreshRobust(); },
    });
    this.robust = new RobustView($("robust-view"), $("curves-view"), this.model, {
      grid: this.src.grid, onEps: (e, final) => this.setEps(e, final),
    });
    this.neuron = new NeuronPanel($("neuron-view"), this.model, {
      onRename: (l, j, name) => this.rename(l, j, name), onClose: () => this.closeNeuron(),
      onSample: (i) => this.setSample(i),
      note: this.src.live ? this.model.names.note : "Static site: names you type are kept in this browser only.",
    });
    this.trace = new TraceView($("trace-view"), tip, this.model, {
      onTarget: (k) => { this.state.target = k; this.writeHash(); this.refreshTrace(); },
      onNeuron: (k) => this.openNeuron(k),
    });
    // State from the URL.
    const q = readHash();
    const d = this.model.input_shape.reduce((a, b) => a * b, 1);
    const x = decodeX(q.x, d);
    this.state.eps = q.eps !== undefined && Number.isFinite(+q.eps) ? Math.max(0, Math.min(1, +q.eps)) : this.model.eps;
    if (this.src.grid) this.state.eps = this.src.grid.reduce((b, e) => (Math.abs(e - this.state.eps) < Math.abs(b - this.state.eps) ? e : b));
    this.state.target = q.c !== undefined && /^\d+$/.test(q.c) && +q.c < this.model.n_classes ? +q.c : null;
    this.state.filters = {digit: q.d ?? "all", mis: q.m === "1", nonrobust: q.r === "1"};
    this.input.setFilters(this.state.filters);
    this.robust.setEps(this.state.eps);
    const si = q.s !== undefined && /^\d+$/.test(q.s) ? +q.s : null;
    const known = (i) => i !== null && this.samples.indices.includes(i);
    if (x && this.src.live) {
      this.state.x = x;
      this.state.from = known(si) ? si : null;
    } else {
      this.state.sample = known(si) ? si : (this.samples.indices[0] ?? null);
      if (this.state.sample === null) this.state.x = new Array(d).fill(0);
    }
    await this.refreshForward();
    this.refreshRobust();
    if (q.n && /^L\d+\.n\d+$/.test(q.n)) this.openNeuron(q.n);
    this.pollSweep();
    this.pollAnalysis("signatures", $("signatures-view"), (p) => renderSignatures($("signatures-view"), this.model, p));
    this.pollAnalysis("prototypes", $("prototypes-view"), (p) => renderPrototypes($("prototypes-view"), this.model, p, (i) => this.setSample(i)));
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

  currentInput() {
    return this.state.x ? {x: this.state.x} : {sample: this.state.sample};
  }

  writeHash() {
    const p = new URLSearchParams();
    if (this.state.x) {
      p.set("x", encodeX(this.state.x));
      if (this.state.from !== null) p.set("s", this.state.from);
    } else if (this.state.sample !== null) p.set("s", this.state.sample);
    p.set("eps", String(+this.state.eps.toFixed(4)));
    if (this.state.neuron) p.set("n", this.state.neuron);
    if (this.state.target !== null) p.set("c", this.state.target);
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

  error(err) {
    if (isAbort(err)) return;
    fill($("errors"), h("div", {class: "error", role: "alert"}, err.message || String(err)));
    setTimeout(() => fill($("errors")), 6000);
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
    this.robust.setEps(eps);
    this.robust.pending();
    this.writeHash();
    if (final) {  // released: check this radius now; while dragging, wait for a pause
      this.epsChanged.cancel();
      this.refreshEps();
    } else {
      this.epsChanged();
    }
  }

  // -- refreshers -------------------------------------------------------------------------------

  async refreshForward(opts = {}) {
    const req = this.ch.fwd.start();
    const input = this.currentInput();
    let fwd;
    try {
      fwd = await this.src.forward(input, req.signal);
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
    this.input.show(fwd, {sample: this.state.x ? this.state.from : this.state.sample, drawn: !!this.state.x});
    if (this.neuron.key && this.neuron.data) this.neuron.show(this.neuron.data, fwd);
    this.writeHash();
    document.body.dataset.input = tag;
    this.robust.pending();
    this.trace.pending();
    if (opts.painting) this.slow(); else { this.slow.cancel(); this.refreshSlow(); }
  }

  _legendCount(fwd) {
    const parts = fwd.diagram.columns.slice(1, -1).filter((c) => c.more).map((c) => `layer ${c.layer}: ${c.shown.length} of ${c.width} neurons (largest |activation|)`);
    const e = fwd.diagram.edges.map((e) => `${e.src.length} of ${e.total}`).join(", ");
    return `${parts.length ? parts.join("; ") + "; " : ""}edges drawn per layer: ${e}`;
  }

  // The certificate first: the tooltip bounds would compete with it for the server's CPU.
  async refreshSlow() {
    this.refreshTrace();
    await this.refreshCertify();
    this.refreshBounds();
  }

  async refreshEps() {
    const cert = this.refreshCertify();
    this.refreshRobust();
    await cert;
    this.refreshBounds();
  }

  async refreshBounds() {
    const req = this.ch.bounds.start();
    try {
      const b = await this.src.bounds(this.currentInput(), this.state.eps, req.signal);
      if (req.seq !== req.current()) return;
      this.diagram.setBounds(b);
    } catch (err) { this.error(err); }
  }

  async refreshCertify() {
    const req = this.ch.cert.start();
    const eps = this.state.eps;
    this.robust.pending();
    try {
      const c = await this.src.certify(this.currentInput(), eps, req.signal);
      if (req.seq !== req.current()) return;
      if (c.status === "cancelled") return;
      this.robust.show({...c, eps: c.eps ?? eps}, this.fwd ? this.fwd.x : null);
      const st = $("cert-status");
      st.dataset.eps = String(eps);
      st.dataset.input = document.body.dataset.input;
    } catch (err) {
      if (!isAbort(err)) this.robust.show({error: err.message, eps});
    }
  }

  async refreshTrace() {
    const req = this.ch.trace.start();
    try {
      const t = await this.src.trace(this.currentInput(), this.state.target, req.signal);
      if (req.seq !== req.current()) return;
      this.trace.show(t);
    } catch (err) { this.error(err); }
  }

  async refreshRobust() {
    if (!this.state.filters.nonrobust || !this.model.n_samples) {
      this.input.setRobust(null);
      return;
    }
    const req = this.ch.robust.start();
    this.input.setRobust(null, true);
    try {
      const r = await this.src.robust(this.state.eps, req.signal);
      if (req.seq !== req.current()) return;
      this.input.setRobust(r);
      const list = this.input.matching();
      if (this.state.sample !== null && list.length && !list.includes(this.state.sample)) this.setSample(list[0]);
    } catch (err) { this.error(err); }
  }

  async openNeuron(key) {
    const m = key.match(/^L(\d+)\.n(\d+)$/);
    if (!m || +m[1] < 1 || +m[1] > this.model.layers.length || +m[2] >= this.model.layers[+m[1] - 1].width) return;
    this.state.neuron = key;
    this.diagram.setSelected(key);
    this.writeHash();
    if (this.neuron.key !== key) this.neuron.loading(key);
    const req = this.ch.neuron.start();
    try {
      const p = await this.src.neuron(+m[1], +m[2], req.signal);
      if (req.seq !== req.current() || this.state.neuron !== key) return;
      this.neuron.show(p, this.fwd);
      if (p.report && p.report.status === "running") setTimeout(() => { if (this.state.neuron === key) this.openNeuron(key); }, 700);
      else $("neuron-view").dataset.ready = key;
    } catch (err) { this.error(err); }
  }

  closeNeuron() {
    this.state.neuron = null;
    this.neuron.close();
    this.diagram.setSelected(null);
    this.writeHash();
  }

  async rename(layer, j, name) {
    const r = await this.src.rename(layer, j, name);
    this.model = await this.src.model();
    this.neuron.model = this.model;
    this.trace.setModel(this.model);
    this.input.model = this.model;
    if (this.fwd) this.diagram.render(this.model, this.fwd);
    this.diagram.setSelected(this.state.neuron);
    if (this.state.neuron) await this.openNeuron(this.state.neuron);
    this.refreshTrace();
    return r;
  }

  async pollSweep() {
    try {
      const sw = await this.src.sweep();
      this.robust.showSweep(sw);
      if (sw && (sw.status === "running" || sw.status === "idle")) setTimeout(() => this.pollSweep(), 1500);
    } catch (err) { this.error(err); }
  }

  async pollAnalysis(name, root, render) {
    try {
      const p = await this.src[name]();
      render(p);
      if (p && p.status === "running") setTimeout(() => this.pollAnalysis(name, root, render), 1500);
    } catch (err) {
      fill(root, h("h2", {}, name), h("div", {class: "bad"}, err.message));
    }
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
