// The neuron panel: opened by clicking a neuron. Weight map, LP maximiser and minimiser, top and
// bottom test images, activation histogram per class, the suggested name, and renaming in place.

import { h, fill, fmt, signed, imageSvg, barList, plot } from "polylens/util.js";

export class NeuronPanel {
  /** opts.onRename(layer, j, name) -> Promise; opts.onClose(); opts.onSample(i); opts.note: where names go. */
  constructor(root, model, opts) {
    this.root = root;
    this.model = model;
    this.opts = opts;
    this.key = null;
    this.data = null;
  }

  close() {
    this.key = null;
    this.root.hidden = true;
    fill(this.root);
  }

  loading(key) {
    this.key = key;
    this.root.hidden = false;
    fill(this.root, h("h2", {}, `Neuron ${key}`), h("div", {class: "muted"}, "loading…"));
  }

  /** Show a neuron payload. current: the current forward payload (to mark the input's activation). */
  show(p, current) {
    this.key = p.key;
    this.data = p;
    this.root.hidden = false;
    const shape = this.model.input_shape;
    const nameInput = h("input", {type: "text", id: "rename-input", value: p.named ? p.name : "", maxlength: 60,
                                  placeholder: p.key, "aria-label": "neuron name"});
    // The panel is redrawn when the rename lands (every view updates), so the message is kept here.
    const msg = h("span", {class: "small muted", id: "rename-msg"}, this.msg && this.msg.key === p.key ? this.msg.text : "");
    const say = (text) => {
      this.msg = {key: p.key, text};
      const el = document.getElementById("rename-msg");
      if (el) el.textContent = text;
    };
    const save = async (name) => {
      say("saving…");
      try {
        const r = await this.opts.onRename(p.layer, p.neuron, name);
        say(r && r.saved_to ? `saved to ${r.saved_to}` : `saved (${r && r.note ? r.note : "in memory"})`);
      } catch (err) {
        say(`not saved: ${err.message}`);
      }
    };
    const form = h("form", {class: "rename", id: "rename-form", onsubmit: (e) => { e.preventDefault(); save(nameInput.value); }},
      nameInput, h("button", {type: "submit", id: "rename-save"}, "rename"), msg);
    const sug = p.suggestion;
    const cur = current && current.layers ? current.layers[p.layer - 1] : null;
    const act = cur ? cur.post[p.neuron] : null;

    const head = h("div", {class: "panel-head"},
      h("h2", {id: "neuron-title"}, p.name, h("span", {class: "tip-key"}, ` ${p.key} · ${p.activation}`)),
      h("button", {class: "close", id: "neuron-close", title: "close", onclick: () => this.opts.onClose()}, "×"));
    const sugEl = sug
      ? h("div", {class: "suggestion", id: "suggestion"}, "suggested name: ", h("b", {}, sug.name),
          ` (score ${fmt(sug.score, 2)}${sug.runner_up ? `; runner-up ${sug.runner_up[0]} ${fmt(sug.runner_up[1], 2)}` : ""}) `,
          h("button", {type: "button", id: "use-suggestion", onclick: () => { nameInput.value = sug.name; save(sug.name); }}, "use it"))
      : h("div", {class: "muted small"}, "no suggested name (the input is not a 2-D grid)");
    const rep = p.report;
    let body;
    if (!rep || rep.status === "running") {
      body = h("div", {class: "muted", id: "report-status"}, "computing the neuron analysis (LP maximiser and minimiser, test images)…");
    } else if (rep.status === "error") {
      body = h("div", {class: "bad"}, `neuron analysis failed: ${rep.error}`);
    } else {
      body = this._report(rep, shape, act);
    }
    const incoming = p.inputs
      ? h("div", {class: "incoming"}, h("h3", {}, p.inputs_more ? `strongest ${p.inputs.length} incoming weights` : "incoming weights"),
          barList(p.inputs.map((n) => ({label: n.name, value: n.weight, text: signed(n.weight, 3), title: n.key}))),
          p.inputs_more ? h("div", {class: "small muted"}, `+${p.inputs_more} weaker`) : null)
      : null;
    fill(this.root, head,
      h("div", {class: "small muted"}, act !== null ? `activation on the current input: z = ${fmt(act, 4)}` : ""),
      form, h("div", {class: "small muted"}, this.opts.note), sugEl, incoming, body);
  }

  _report(r, shape, act) {
    const names = this.model.class_names;
    const mx = r.maximiser, mn = r.minimiser;
    const ext = (e, title) => h("figure", {class: "extremum"},
      imageSvg(e.x, shape, {size: 96, label: title}),
      h("figcaption", {},
        h("div", {}, h("b", {}, title)),
        h("div", {}, `z = ${fmt(e.value, 3)}`),
        h("div", {class: "small"}, `${e.sense === "max" ? "LP upper bound" : "LP lower bound"} ${fmt(e.safe_bound, 3)}`),
        h("div", {class: "small muted"}, `best test image ${fmt(e.best_test_value, 3)} (#${e.best_test_index})`)));
    const thumbs = (idx, vals, inputs, labels, cls) => h("div", {class: `thumbs ${cls}`},
      idx.map((i, k) => h("button", {class: "thumb", title: `test sample #${i}, label ${names[labels[k]]}: z = ${fmt(vals[k], 3)}`,
                                      "data-sample": i, onclick: () => this.opts.onSample(i)},
        imageSvg(inputs[k], shape, {size: 44}), h("div", {class: "small"}, fmt(vals[k], 2)))));
    const hist = h("div", {class: "plot", id: "neuron-hist"});
    const mapKind = r.map_kind === "weights" ? "weight map (layer-1 weights on the input grid)" : `effective map: ${r.map_kind}`;
    const out = h("div", {class: "report"},
      h("div", {class: "report-row"},
        h("figure", {class: "extremum"}, imageSvg(r.map.flat(), shape, {size: 96, mode: "diverging", label: "weight map"}),
          h("figcaption", {}, h("b", {}, "map"), h("div", {class: "small"}, mapKind),
            h("div", {class: "small muted"}, "blue +, red −"))),
        ext(mx, "LP maximiser"), ext(mn, "LP minimiser")),
      h("h3", {}, "most activating test images"), thumbs(r.top_indices, r.top_values, r.top_inputs, r.top_labels, "top"),
      h("h3", {}, "least activating test images"), thumbs(r.bottom_indices, r.bottom_values, r.bottom_inputs, r.bottom_labels, "bottom"),
      h("h3", {}, "activation histogram per class"), hist,
      h("div", {class: "small muted"}, `pre-activation range over [0,1]^d: [${fmt(r.pre_bounds[0], 3)}, ${fmt(r.pre_bounds[1], 3)}]`));
    requestAnimationFrame(() => this._hist(hist, r, act));
    return out;
  }

  _hist(div, r, act) {
    const names = this.model.class_names;
    // Each class's histogram as a row (counts on the analysis's shared bin edges: plotly takes
    // n + 1 x values as the edges of n columns), with the class mean marked.
    const z = r.class_counts;
    const traces = [{type: "heatmap", x: r.bin_edges, y: names.map((c) => `digit ${c}`), z, colorscale: "Greys",
                     reversescale: true, showscale: false, hovertemplate: "%{y}, z≈%{x:.3f}: %{z} images<extra></extra>"},
                    {type: "scatter", mode: "markers", x: r.class_mean, y: names.map((c) => `digit ${c}`),
                     marker: {symbol: "line-ns-open", size: 14, color: "#d62728", line: {width: 2}}, name: "class mean",
                     hovertemplate: "%{y} mean %{x:.3f}<extra></extra>"}];
    const shapes = act !== null && act !== undefined
      ? [{type: "line", x0: act, x1: act, yref: "paper", y0: 0, y1: 1, line: {color: "#1f77b4", width: 2, dash: "dot"}}] : [];
    plot(div, traces, {margin: {l: 60, r: 10, t: 6, b: 34}, height: 240, showlegend: false, shapes,
                       xaxis: {title: {text: "post-activation z"}}});
  }
}

/** The neuron view: the panel of the neuron clicked in the diagram (#neuron-view, hidden until then). */
export function mount(root, app) {
  const panelRoot = h("section", {class: "panel span2", id: "neuron-view", hidden: true});
  root.appendChild(panelRoot);
  const panel = new NeuronPanel(panelRoot, app.model, {
    onRename: (l, j, name) => app.rename(l, j, name), onClose: () => app.closeNeuron(),
    onSample: (i) => app.setSample(i),
    note: app.src.live ? app.model.names.note : "Static site: names you type are kept in this browser only.",
  });
  let seq = 0;
  const open = async (key) => {
    const id = app.neuronOf(key);
    const mine = ++seq;
    if (panel.key !== key) panel.loading(key);
    try {
      const p = await app.lens("neurons", "main", id);
      if (mine !== seq || app.state.neuron !== key) return;
      panel.show(p, app.fwd);
      if (p.report && p.report.status === "running") setTimeout(() => { if (app.state.neuron === key) open(key); }, 700);
      else panelRoot.dataset.ready = key;
    } catch (err) { app.error(err); }
  };
  return {
    neuron: (key) => open(key),
    closeNeuron: () => panel.close(),
    input: (input, fwd) => { if (panel.key && panel.data) panel.show(panel.data, fwd); },
    model: (model) => { panel.model = model; if (app.state.neuron) return open(app.state.neuron); },
  };
}
