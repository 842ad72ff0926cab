// Trace: for the current input and a chosen class, the exact flow from pixels through the named
// neurons into that class's logit (polylens.analyses.trace), the identity logit = flows + constants
// per layer, and the digit's average formula.

import { h, s, fill, fmt } from "polylens/util.js";
import { Diagram } from "polylens/diagram.js";

export class TraceView {
  /** opts.onTarget(k): a class was chosen; opts.onNeuron(key). */
  constructor(root, tooltip, model, opts) {
    this.root = root;
    this.model = model;
    this.opts = opts;
    this.classBar = h("div", {class: "class-bar", id: "trace-classes"});
    this.equations = h("div", {class: "equations", id: "trace-equations"});
    this.pixels = h("div", {class: "trace-pixels"});
    this.svg = s("svg", {class: "diagram trace-diagram", id: "trace-diagram", width: "100%", preserveAspectRatio: "xMidYMin meet"});
    this.formula = h("div", {class: "formula", id: "trace-formula"});
    this.diagram = new Diagram(this.svg, tooltip, {kind: "trace", onNeuron: opts.onNeuron});
    fill(root, h("h2", {}, "Trace"),
      h("div", {class: "small muted"}, "Exact decomposition of one logit at this input: each activation is written z = g·a + o at the " +
        "current point, so the logit is a sum of flows along paths. Edge width: |flow| into the chosen logit; blue raises it, red lowers it."),
      this.classBar, this.equations, this.pixels, h("div", {class: "trace-svg-wrap"}, this.svg), this.formula);
  }

  pending() {
    this.root.classList.add("stale");
  }

  show(t) {
    this.root.classList.remove("stale");
    if (t.available === false || t.error) {
      fill(this.equations, h("div", {class: "bad"}, t.note || t.error));
      return;
    }
    const names = this.model.class_names;
    fill(this.classBar, "logit of class ", names.map((c, k) => h("button", {
      class: `class-btn${k === t.target ? " active" : ""}${k === t.prediction ? " predicted" : ""}`, "data-class": k,
      title: k === t.prediction ? "the predicted class" : "", onclick: () => this.opts.onTarget(k)}, c)));
    fill(this.equations, t.equations.map((e, i) => h("div", {class: "equation"}, h("span", {class: "muted small"}, `layer ${i + 1}: `), h("code", {}, e))));
    fill(this.pixels, h("div", {class: "small muted"},
      `pixels: the flows of all ${t.pixel_flow.length} pixels sum to ${fmt(t.pixel_total, 3)}; ` +
      `with the constants (${fmt(t.pixel_constant, 3)}) that is logit[${t.target}] = ${fmt(t.logit, 3)}.`));
    this.diagram.render(this.model, t);
    const f = t.formula;
    fill(this.formula, f
      ? h("div", {},
          h("div", {}, h("b", {}, "average formula "), h("code", {id: "formula-text"}, f.text)),
          h("details", {}, h("summary", {class: "small"}, `how to read it (${f.n_images} test images of digit ${names[f.digit]}, accuracy ${fmt(100 * f.accuracy, 1)}%)`),
            h("pre", {class: "small explanation"}, f.explanation)))
      : h("div", {class: "muted small"}, "no formula (no test images of this class)"));
  }

  setModel(model) {
    this.model = model;
  }
}

/** The trace view: the exact flows of the input on screen into the chosen class (URL key "c"). */
export function mount(root, app) {
  const panel = h("section", {class: "panel wide", id: "trace-view"});
  root.appendChild(panel);
  const view = new TraceView(panel, app.tooltip, app.model, {
    onTarget: (k) => { app.setParam("c", k); refresh(); },
    onNeuron: (k) => app.openNeuron(k),
  });
  let seq = 0;
  const refresh = async () => {
    const mine = ++seq;
    const c = app.param("c");
    const target = c !== undefined && /^\d+$/.test(c) && +c < app.model.n_classes ? +c : null;
    try {
      const t = await app.lens("trace", "main", {...app.input(), target});
      if (mine === seq) view.show(t);
    } catch (err) { app.error(err); }
  };
  return {
    pending: () => view.pending(),
    input: () => refresh(),
    model: (model) => { view.setModel(model); return refresh(); },
  };
}
