// Bases: neurons versus principal components (and ICA, NMF, dictionaries) of a layer. Pick a model, a
// layer, a basis and one of its vectors: its strip of examples, the variance and ablation curves of
// every basis, and the vector's picture (weights in input space, or what grows along its strip).
// Fields: polylens.lenses.bases.explore.bases_payload.

import { h, fill, fmt, imageSvg, notReady, plot } from "polylens/util.js";

const COLOURS = {neuron: "#d62728", pca: "#1f77b4", ica: "#2ca02c", nmf: "#9467bd", dictionary: "#ff7f0e"};

function select(id, options, value, onchange) {
  const el = h("select", {id, onchange: (e) => onchange(e.target.value)},
    options.map((o) => h("option", {value: o.value, ...(String(o.value) === String(value) ? {selected: "selected"} : {})}, o.label)));
  return el;
}

function summaryTable(p) {
  const rows = Object.entries(p.bases).map(([name, b]) => h("tr", {"data-basis": name},
    h("th", {}, name), h("td", {}, String(b.vectors)), h("td", {}, b.k80 ?? "–"), h("td", {}, b.k99 ?? "–"),
    h("td", {}, fmt(b.coherence, 2)), h("td", {class: "small muted"}, b.note || "")));
  return h("table", {id: "bases-table", class: "small"},
    h("thead", {}, h("tr", {}, ...["basis", "vectors", "k80", "k99", "strip coherence", "note"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

function drawCurves(varDiv, ablDiv, p) {
  const vt = [], at = [];
  for (const [name, b] of Object.entries(p.bases)) {
    const k = b.cumulative.map((_, i) => i + 1);
    vt.push({x: [0, ...k], y: [0, ...b.cumulative], name, mode: "lines", line: {color: COLOURS[name]}});
    const ab = b.ablation, n = ab.top_first.length - 1;
    const xs = ab.evaluated.map((kk) => kk / Math.max(n, 1));
    at.push({x: xs, y: ab.evaluated.map((kk) => ab.top_first[kk]), name: `${name} top first`, mode: "lines",
             line: {color: COLOURS[name]}});
    at.push({x: xs, y: ab.evaluated.map((kk) => ab.bottom_first[kk]), name: `${name} bottom first`, mode: "lines",
             line: {color: COLOURS[name], dash: "dash"}, showlegend: false});
  }
  const base = {height: 260, margin: {l: 50, r: 10, t: 28, b: 40}, legend: {font: {size: 10}}};
  plot(varDiv, vt, {...base, title: {text: "cumulative explained variance", font: {size: 12}},
                    xaxis: {title: "vectors k", type: p.width > 30 ? "log" : "linear"}, yaxis: {range: [0, 1.02]}});
  plot(ablDiv, at, {...base, title: {text: "accuracy after removing the first k (dashed: last first)", font: {size: 12}},
                    xaxis: {title: "fraction removed"}, yaxis: {range: [0, 1.02]}});
}

function stripView(p, basis, comp) {
  const b = p.bases[basis];
  if (!b || !b.strips.length) return h("div", {id: "bases-strip", class: "muted"}, "no strip for this basis");
  const i = Math.min(comp, b.strips.length - 1);
  const s = b.strips[i], imgs = b.strip_images[i];
  const shape = p.strip_shape.length ? p.strip_shape : [1, imgs[0].length];
  return h("div", {id: "bases-strip", "data-basis": basis, "data-component": i},
    h("div", {class: "small"}, `${basis} vector ${i + 1}: coherence ${fmt(s.coherence, 2)} (0 = shuffled), ` +
      `ink monotonicity ${fmt(s.monotonicity, 2)}; fraction of variance ${fmt(b.explained_variance[i], 3)}`),
    h("div", {class: "bases-strip-row", style: "display:flex;flex-wrap:wrap;gap:4px;align-items:flex-end"}, imgs.map((im, j) => h("figure", {class: "thumb", style: "margin:0;text-align:center", title: `sample #${s.samples[j]}, code ${fmt(s.codes[j], 2)}`},
      imageSvg(im, shape, {size: 52, label: `strip image ${j + 1}`}),
      h("figcaption", {class: "small muted"}, fmt(s.codes[j], 1))))));
}

function pictureView(p, basis, comp) {
  const b = p.bases[basis];
  if (!b || !b.pictures.length) return h("div", {id: "bases-picture"});
  const i = Math.min(comp, b.pictures.length - 1);
  return h("div", {id: "bases-picture"},
    h("div", {class: "small muted"}, b.picture_kind === "weights" ? "the vector's weights in input space (blue +, red −)"
      : "what grows along the strip (its end minus its start; blue +, red −)"),
    imageSvg(b.pictures[i], b.picture_shape, {size: 120, mode: "diverging", label: `picture of ${basis} vector ${i + 1}`}));
}

export function renderBases(root, p, state, onChange) {
  const head = h("h2", {}, "Bases of a layer");
  if (notReady(root, head, p, "bases-status", "fitting the bases of this layer…")) {
    root.prepend(controls(p, state, onChange));
    return;
  }
  const names = Object.keys(p.bases);
  if (!names.includes(state.basis)) state.basis = names.includes("pca") ? "pca" : names[0];
  const b = p.bases[state.basis];
  const comps = (b ? b.strips : []).map((_, i) => ({value: i, label: `vector ${i + 1}`}));
  const varDiv = h("div", {id: "bases-variance", class: "plot"});
  const ablDiv = h("div", {id: "bases-ablation", class: "plot"});
  fill(root, head, controls(p, state, onChange),
    h("div", {class: "small muted"}, `layer ${p.layer} (${p.post ? "after" : "before"} the nonlinearity), width ${p.width}, ` +
      `${p.n} inputs, ${p.rows} activation rows${p.positions > 1 ? ` (${p.positions} positions per input)` : ""}; accuracy ${fmt(p.accuracy, 3)}.`),
    p.degenerate ? h("div", {class: "note", id: "bases-degenerate"}, p.degenerate) : h("span"),
    summaryTable(p),
    ...Object.entries(p.skipped || {}).map(([k, v]) => h("div", {class: "small muted", "data-skipped": k}, `${k} skipped: ${v}`)),
    h("div", {class: "row"},
      h("label", {}, "basis ", select("bases-basis", names.map((n) => ({value: n, label: n})), state.basis,
        (v) => { state.basis = v; state.component = 0; onChange(false); })),
      h("label", {}, " vector ", select("bases-component", comps, state.component,
        (v) => { state.component = Number(v); onChange(false); }))),
    h("div", {class: "row", style: "display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start"},
      stripView(p, state.basis, state.component), pictureView(p, state.basis, state.component)),
    h("div", {style: "display:grid;grid-template-columns:1fr 1fr;gap:8px"}, varDiv, ablDiv));
  drawCurves(varDiv, ablDiv, p);
}

function controls(p, state, onChange) {
  const models = (p && p.models) || [state.model];
  const layers = (p && p.layers) || [{value: state.layer, label: state.layer}];
  return h("div", {class: "row", id: "bases-controls"},
    h("label", {}, "model ", select("bases-model", models.map((m) => ({value: m, label: m === "session" ? "this model" : m})),
      state.model, (v) => { state.model = v; state.layer = "1"; onChange(true); })),
    h("label", {}, " layer ", select("bases-layer", layers, state.layer, (v) => { state.layer = v; onChange(true); })),
    h("label", {}, " ", h("input", {type: "checkbox", id: "bases-post", ...(state.post ? {checked: "checked"} : {}),
      onchange: (e) => { state.post = e.target.checked; onChange(true); }}), " after the nonlinearity"));
}

/** The bases view: one wide panel; the payload is computed in the background per (model, layer, post). */
export function mount(root, app) {
  const panel = h("section", {class: "panel wide", id: "bases-view"});
  root.appendChild(panel);
  const state = {model: app.param("bm") || "session", layer: app.param("bl") || "1", post: app.param("bp") === "1",
                 basis: app.param("bb") || "pca", component: Number(app.param("bc") || 0)};
  let last = null, token = 0;
  const save = () => {
    app.setParam("bm", state.model === "session" ? null : state.model);
    app.setParam("bl", state.layer === "1" ? null : state.layer);
    app.setParam("bp", state.post ? "1" : null);
    app.setParam("bb", state.basis);
    app.setParam("bc", state.component || null);
  };
  const load = () => {
    const mine = ++token;
    app.poll("bases", "main", {model: state.model, layer: state.layer, post: state.post}, (p) => {
      if (mine !== token) return;
      last = p;
      renderBases(panel, p, state, onChange);
    });
  };
  const onChange = (refetch) => { save(); if (refetch || !last) load(); else renderBases(panel, last, state, onChange); };
  load();
  return {};
}
