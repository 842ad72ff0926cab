// Robustness: the eps slider, the certificate of the current input at eps (verified / falsified /
// unknown, per competing class margin bounds, the counterexample), and per-digit robustness curves
// from the background sweep.

import { h, fill, fmt, signed, badge, barList, imageSvg, plot } from "polylens/util.js";

const RATE_NAMES = {lp: "verified (LP)", crown: "verified (CROWN)", ibp: "verified (interval)",
                    attack: "not falsified (attack)", clean: "clean accuracy"};

export class RobustView {
  /** opts.onEps(eps, final): the slider moved (final: released). opts.grid: static eps grid or null. */
  constructor(root, curvesRoot, model, opts) {
    this.root = root;
    this.curvesRoot = curvesRoot;
    this.model = model;
    this.opts = opts;
    this.grid = opts.grid;   // static mode: the precomputed eps values
    this.rate = "lp";
    this._build();
  }

  _build() {
    const g = this.grid;
    this.slider = h("input", {type: "range", id: "eps", min: 0, max: g ? g.length - 1 : this.model.eps_max,
                              step: g ? 1 : 0.001, value: 0, "aria-label": "epsilon"});
    this.epsLabel = h("output", {id: "eps-value"}, "");
    this.slider.addEventListener("input", () => this.opts.onEps(this.value(), false));
    this.slider.addEventListener("change", () => this.opts.onEps(this.value(), true));
    this.status = h("div", {class: "cert-status", id: "cert-status"}, badge("pending", "…"));
    this.detail = h("div", {class: "cert-detail", id: "cert-detail"});
    this.margins = h("div", {class: "margins", id: "margins"});
    this.cex = h("div", {class: "cex", id: "counterexample"});
    fill(this.root,
      h("h2", {}, "Robustness"),
      h("div", {class: "eps-row"}, h("label", {for: "eps"}, "ε (L∞ radius)"), this.slider, this.epsLabel),
      h("div", {class: "muted small"}, g
        ? "Static site: ε moves over the radii precomputed at export; each check below was run then."
        : `Each move re-runs certification of this input live (interval → CROWN → attack → LP, ${this.model.time_limit} s per LP).`),
      this.status, this.detail, this.margins, this.cex);
  }

  value() {
    return this.grid ? this.grid[+this.slider.value] : +this.slider.value;
  }

  setEps(eps) {
    if (this.grid) {
      let best = 0;
      this.grid.forEach((e, i) => { if (Math.abs(e - eps) < Math.abs(this.grid[best] - eps)) best = i; });
      this.slider.value = String(best);
    } else {
      this.slider.value = String(eps);
    }
    this.epsLabel.textContent = fmt(this.value(), 3);
  }

  pending() {
    fill(this.status, badge("pending", "checking…"));
  }

  /** Show a certificate payload (or a timeout / error). x: the current input (for the difference map). */
  show(cert, x) {
    this.epsLabel.textContent = fmt(cert.eps ?? this.value(), 3);
    if (cert.status === "timeout") {
      fill(this.status, badge("timeout", "time limit"), h("span", {class: "muted"}, ` ${cert.message}`));
      fill(this.detail); fill(this.margins); fill(this.cex);
      return;
    }
    if (cert.error) {
      fill(this.status, badge("error", "error"), h("span", {}, ` ${cert.error}`));
      return;
    }
    const names = this.model.class_names;
    const y = cert.label;
    const src = {label: "the test label", given: "the given label", prediction: "the network's prediction (drawn input)"}[cert.label_source] ?? "";
    fill(this.status, badge(cert.status), " ",
      h("span", {}, cert.status === "verified" ? `every input within ε = ${fmt(cert.eps, 3)} is classified ${names[y]}`
        : cert.status === "falsified" ? (cert.decided_by === "clean" ? "the input itself is misclassified"
          : `an input within ε = ${fmt(cert.eps, 3)} is classified ${names[cert.counterexample_prediction]}`)
        : "neither proved nor refuted at this ε"));
    fill(this.detail,
      h("span", {}, `class ${names[y]} (${src})`),
      cert.decided_by ? h("span", {}, ` · decided by ${cert.decided_by}`) : null,
      h("span", {}, ` · ${cert.lp_solves} LP solve${cert.lp_solves === 1 ? "" : "s"}`),
      cert.elapsed_s !== undefined && cert.elapsed_s !== null ? h("span", {}, cert.cached ? ` · cached (took ${fmt(cert.elapsed_s * 1000, 0)} ms)` : ` · ${fmt(cert.elapsed_s * 1000, 0)} ms`) : null,
      cert.precomputed ? h("span", {}, " · precomputed at export") : null);
    const items = [];
    cert.margin_lower.forEach((m, k) => {
      if (k === y) return;
      items.push({label: `vs ${names[k]}`, value: m ?? -1e9, text: m === null ? "−∞" : `≥ ${signed(m, 3)}`,
                  cls: m !== null && m > 0 ? "bar-ok" : "bar-bad",
                  title: `rigorous lower bound of logit ${names[y]} − logit ${names[k]} over the ε-box`});
    });
    const finite = items.filter((it) => it.value > -1e8).map((it) => Math.abs(it.value));
    fill(this.margins, h("div", {class: "small"}, `lower bounds of logit ${names[y]} − logit k (positive for every k: verified)`),
      barList(items.map((it) => ({...it, value: it.value < -1e8 ? -Math.max(...finite, 1) : it.value})),
              {vmax: Math.max(...finite, 1e-9)}));
    if (cert.counterexample) {
      const shape = this.model.input_shape;
      fill(this.cex,
        h("div", {class: "small"}, `counterexample: classified ${names[cert.counterexample_prediction]}`),
        h("div", {class: "cex-row"},
          imageSvg(cert.counterexample, shape, {size: 84, label: "counterexample"}),
          cert.counterexample_delta && cert.decided_by !== "clean"
            ? h("div", {class: "small muted"}, "change (blue more ink, red less)", imageSvg(cert.counterexample_delta, shape, {size: 84, mode: "diverging", vmax: Math.max(cert.eps, 1e-9), label: "change"}))
            : null));
    } else {
      fill(this.cex);
    }
  }

  // -- curves --------------------------------------------------------------------------------------

  showSweep(sw) {
    if (!this.curvesRoot) return;
    const head = h("h2", {}, "Robustness curves per digit");
    if (!sw || sw.status === "running" || sw.status === "idle") {
      fill(this.curvesRoot, head, h("div", {class: "muted", id: "sweep-status"},
        sw && sw.total ? `computing the sweep in the background: ${sw.done} of ${sw.total} chunks (${sw.n} test images × ${sw.eps.length} radii)…`
                       : "starting the sweep…"));
      return;
    }
    if (sw.status === "error" || sw.status === "disabled") {
      fill(this.curvesRoot, head, h("div", {class: sw.status === "error" ? "bad" : "muted", id: "sweep-status"}, sw.error));
      return;
    }
    this.sweep = sw;
    const sel = h("select", {id: "rate-select", onchange: () => { this.rate = sel.value; this._plot(); }},
      Object.entries(RATE_NAMES).map(([k, v]) => h("option", {value: k, selected: k === this.rate}, v)));
    this.plotDiv = h("div", {class: "plot", id: "curves-plot"});
    fill(this.curvesRoot, head,
      h("div", {class: "small muted", id: "sweep-status"},
        `${sw.n} test images × ${sw.eps.length} radii${sw.elapsed_s ? `, computed in ${fmt(sw.elapsed_s, 1)} s` : ""}. Rate: `, sel),
      this.plotDiv);
    this._plot();
  }

  _plot() {
    const sw = this.sweep;
    if (!sw) return;
    const sm = sw.summary;
    const epsKeys = Object.keys(sm.overall);
    const xs = sm.eps;
    const traces = Object.keys(sm.per_digit).map((d) => ({
      x: xs, y: epsKeys.map((e) => sm.per_digit[d][e][this.rate].value), name: `digit ${this.model.class_names[+d]}`,
      mode: "lines+markers", line: {width: 1.5}, marker: {size: 4},
    }));
    traces.push({x: xs, y: epsKeys.map((e) => sm.overall[e][this.rate].value), name: "all digits", mode: "lines",
                 line: {width: 3.5, color: "#222"}});
    plot(this.plotDiv, traces, {
      margin: {l: 48, r: 10, t: 10, b: 40}, height: 300, xaxis: {title: {text: "ε"}},
      yaxis: {title: {text: RATE_NAMES[this.rate]}, range: [0, 1.02]}, legend: {font: {size: 10}},
    });
  }
}

/**
 * The robustness view: the eps slider with the live certificate of the input on screen (panel
 * #robust-view), the per-digit curves of the background sweep (#curves-view), and the "non-robust at
 * ε" filter of the input view (the status of every sample at ε).
 */
export function mount(root, app) {
  const panel = h("section", {class: "panel", id: "robust-view"});
  const curves = h("section", {class: "panel wide", id: "curves-view"});
  root.append(panel, curves);
  const view = new RobustView(panel, curves, app.model, {grid: app.src.grid, onEps: (e, final) => app.setEps(e, final)});
  let seq = 0;
  let abort = null;
  const certify = async () => {
    const mine = ++seq;
    if (abort) abort.abort();
    abort = new AbortController();
    const eps = app.state.eps;
    view.pending();
    try {
      const c = await app.lens("robustness", "certify", {...app.input(), eps}, abort.signal);
      if (mine !== seq || c.status === "cancelled") return;
      view.show({...c, eps: c.eps ?? eps}, app.fwd ? app.fwd.x : null);
      const st = document.getElementById("cert-status");
      st.dataset.eps = String(eps);
      st.dataset.input = document.body.dataset.input;
    } catch (err) {
      if (err.name !== "AbortError" && mine === seq) view.show({error: err.message, eps});
    }
  };
  const pollSweep = () => app.poll("robustness", "sweep", {}, (sw) => view.showSweep(sw));
  app.setStatusFilter({
    label: " non-robust at ε", title: "only samples not verified robust at the current ε",
    fetch: (eps, signal) => app.lens("robustness", "robust", {eps}, signal),
  });
  view.setEps(app.state.eps);
  pollSweep();
  return {
    pending: () => view.pending(),
    input: () => certify(),
    eps: (eps) => { view.setEps(eps); view.pending(); },
    epsSettled: () => certify(),
  };
}
