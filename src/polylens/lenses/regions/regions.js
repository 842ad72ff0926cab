// Regions (the polytope lens): the exact slice through three test images (hover a region: its
// pattern, class and the affine map of its logit), the exact path from the input on screen to a test
// image (hover a crossing: the neurons that flip there light up in the network diagram), and the
// 3-D hidden spaces (plotly) with the regions the following layers induce there.

import { h, s, fill, fmt, plot } from "polylens/util.js";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const colour = (k) => TAB10[((k % 10) + 10) % 10];

function addStyle() {
  if (document.getElementById("regions-style")) return;
  document.head.appendChild(h("style", {id: "regions-style"},
    "#regions-slice polygon.region:hover{stroke:#000;stroke-width:1.5;fill-opacity:.9}" +
    "#diagram .regions-flip{stroke:#ff7f0e !important;stroke-width:4 !important}" +
    ".regions-tick{cursor:pointer}.regions-tick:hover{stroke:#ff7f0e;stroke-width:3}" +
    ".regions-pattern{font-family:monospace;word-break:break-all}"));
}

function highlight(keys) {
  document.querySelectorAll("#diagram .regions-flip").forEach((el) => el.classList.remove("regions-flip"));
  for (const k of keys || []) {
    document.querySelectorAll(`#diagram [data-key="${k}"]`).forEach((el) => el.classList.add("regions-flip"));
  }
}

function drawSlice(root, hover, p, names) {
  const W = 380, [lo, hi] = p.extent;
  const X = (v) => ((v - lo) / (hi - lo)) * W;
  const Y = (v) => W - ((v - lo) / (hi - lo)) * W;
  const svg = s("svg", {id: "regions-slice", width: W, height: W, viewBox: `0 0 ${W} ${W}`, role: "img",
                        "aria-label": `${p.count} regions of the slice`});
  const pts = (poly) => poly.map(([a, b]) => `${X(a).toFixed(2)},${Y(b).toFixed(2)}`).join(" ");
  // Regions the decision boundary crosses: their class cells underneath, the region itself on top (for hover).
  for (const r of p.regions) {
    for (const c of r.cells || []) {
      svg.appendChild(s("polygon", {points: pts(c.polygon), fill: colour(c.class), "fill-opacity": 0.55,
                                    "pointer-events": "none"}));
    }
  }
  p.regions.forEach((r, idx) => {
    const crossed = (r.cells || []).length > 0;
    const poly = s("polygon", {class: "region", points: pts(r.polygon), fill: crossed ? "#fff" : colour(r.class),
                               "fill-opacity": crossed ? 0.01 : 0.55, stroke: "#555",
                               "stroke-width": 0.3, "stroke-opacity": 0.5, "data-pattern": r.pattern, "data-class": r.class, "data-index": idx});
    poly.addEventListener("mouseenter", () => {
      const [a, b, c] = r.map;
      fill(hover, h("div", {}, h("b", {}, `region ${idx + 1} of ${p.count}`), ` · class ${names[r.class] ?? r.class}`,
        r.classes.length > 1 ? ` (the decision boundary crosses it: ${r.classes.map((k) => names[k] ?? k).join(", ")})` : ""),
        h("div", {}, "pattern ", h("span", {class: "regions-pattern", id: "regions-hover-pattern"}, r.pattern)),
        h("div", {class: "small"}, `affine map on it: logit[${r.class}] = ${fmt(a, 4)} + ${fmt(b, 4)}·s + ${fmt(c, 4)}·t`,
          h("span", {class: "muted"}, `  (area ${fmt(r.area, 4)})`)));
    });
    svg.appendChild(poly);
  });
  for (const [[a, b], [c, d]] of p.boundary) {
    svg.appendChild(s("line", {x1: X(a), y1: Y(b), x2: X(c), y2: Y(d), stroke: "#000", "stroke-width": 1.4,
                               "pointer-events": "none"}));
  }
  [["I", 0, 0], ["J", 1, 0], ["K", 0, 1]].forEach(([n, a, b], q) => {
    svg.appendChild(s("circle", {cx: X(a), cy: Y(b), r: 3.5, fill: "#000", "pointer-events": "none"}));
    svg.appendChild(s("text", {x: X(a) + 5, y: Y(b) - 5, "font-size": 11, "pointer-events": "none"},
      `${n} = #${p.images[q]} (${names[p.labels[q]] ?? p.labels[q]})`));
  });
  fill(root, h("div", {class: "small muted"},
    `The plane x_I + s(x_J − x_I) + t(x_K − x_I), (s, t) in [${lo}, ${hi}]²: ${p.count} regions, exactly, in ` +
    `${fmt(p.seconds, 3)} s; areas sum to ${fmt(p.area, 9)}. Colour: class; black: the decision boundary.` +
    (p.leaves_box ? ` The square leaves [0, 1]^d (${fmt(100 * p.area_in_box / ((hi - lo) ** 2), 1)}% of it is inside).` : "")),
    svg);
}

function drawPath(root, flips, p, names) {
  const W = 560, H = 130, pad = 24;
  const X = (t) => pad + t * (W - 2 * pad);
  const Y = (v) => H - pad - v * (H - 2 * pad);
  const svg = s("svg", {id: "regions-path-svg", width: W, height: H, viewBox: `0 0 ${W} ${H}`});
  const k0 = p.classes[0], k1 = p.classes[p.classes.length - 1];
  for (const [k, dash] of [[k0, ""], [k1, "4 3"]]) {
    const d = p.t.map((t, i) => `${i ? "L" : "M"}${X(t).toFixed(1)},${Y(p.probs[i][k]).toFixed(1)}`).join("");
    svg.appendChild(s("path", {d, fill: "none", stroke: colour(k), "stroke-width": 1.6, "stroke-dasharray": dash}));
  }
  svg.appendChild(s("line", {x1: X(0), y1: Y(0), x2: X(1), y2: Y(0), stroke: "#999"}));
  p.crossings.forEach((t, i) => {
    const tick = s("line", {class: "regions-tick", x1: X(t), y1: Y(0) + 6, x2: X(t), y2: Y(1), stroke: "#777",
                            "stroke-width": 1.2, "data-index": i});
    tick.addEventListener("mouseenter", () => {
      highlight(p.flipped[i]);
      fill(flips, h("span", {}, `crossing ${i + 1} at t = ${fmt(t, 6)}: `),
        h("b", {id: "regions-flipped"}, p.flipped[i].join(", ")), " flip",
        h("div", {class: "small"}, "pattern after it ", h("span", {class: "regions-pattern"}, p.patterns[i + 1])));
    });
    tick.addEventListener("mouseleave", () => highlight([]));
    svg.appendChild(tick);
  });
  fill(root, h("div", {class: "small muted"},
    `From the input on screen to test image #${p.to} (${names[p.label_to] ?? p.label_to}): ${p.crossings.length} region ` +
    `boundaries${p.exact ? ", exactly" : " (sampled and bisected: " + p.note + ")"}. Lines: probability of class ` +
    `${names[k0] ?? k0} (solid) and ${names[k1] ?? k1} (dashed); ticks: crossings (hover one: its neurons light up in the diagram).`),
    svg);
}

function drawHidden(root, p, names) {
  if (!window.Plotly) {
    fill(root, h("div", {class: "muted"}, "plotly.js is not loaded."));
    return;
  }
  fill(root);
  for (const sp of p.spaces) {
    const div = h("div", {class: "regions-hidden-plot", id: `regions-hidden-${sp.layer}`, style: "height:360px"});
    root.appendChild(h("div", {class: "small"}, `hidden layer ${sp.layer}: ` +
      (sp.planes.length ? "planes: the next layer's neurons (w·z + b = 0, exact)" : "faint cubes: the decision regions")));
    root.appendChild(div);
    const traces = [];
    const classes = [...new Set(sp.labels)].sort((a, b) => a - b);
    for (const k of classes) {
      const idx = sp.labels.map((v, i) => (v === k ? i : -1)).filter((i) => i >= 0);
      traces.push({type: "scatter3d", mode: "markers", name: names[k] ?? String(k),
                   x: idx.map((i) => sp.points[i][0]), y: idx.map((i) => sp.points[i][1]), z: idx.map((i) => sp.points[i][2]),
                   marker: {size: 2, color: colour(k)}});
    }
    for (const pl of sp.planes) {
      if (!pl.polygon.length) continue;
      const n = pl.polygon.length;
      traces.push({type: "mesh3d", name: pl.neuron, opacity: 0.25, color: "#555", hoverinfo: "name",
                   x: pl.polygon.map((q) => q[0]), y: pl.polygon.map((q) => q[1]), z: pl.polygon.map((q) => q[2]),
                   i: Array.from({length: n - 2}, () => 0), j: Array.from({length: n - 2}, (_, m) => m + 1),
                   k: Array.from({length: n - 2}, (_, m) => m + 2)});
    }
    if (!sp.planes.length) {
      const G = sp.grid.points;
      traces.push({type: "scatter3d", mode: "markers", name: "decision regions", hoverinfo: "skip", showlegend: false,
                   x: G.map((q) => q[0]), y: G.map((q) => q[1]), z: G.map((q) => q[2]),
                   marker: {size: 5, symbol: "square", opacity: 0.12, color: sp.grid.class.map(colour)}});
    }
    plot(div, traces, {height: 360, margin: {l: 0, r: 0, t: 0, b: 0}, legend: {font: {size: 9}},
                       scene: {xaxis: {title: {text: "n0"}}, yaxis: {title: {text: "n1"}}, zaxis: {title: {text: "n2"}}}});
  }
}

/** The regions view: slice, path (per input) and hidden spaces. */
export function mount(root, app) {
  addStyle();
  const panel = h("section", {class: "panel wide", id: "regions-view"});
  root.appendChild(panel);
  const sliceBox = h("div", {id: "regions-slice-box"});
  const hover = h("div", {id: "regions-hover", class: "small"}, h("span", {class: "muted"}, "Hover a region."));
  const pathBox = h("div", {id: "regions-path"});
  const flips = h("div", {id: "regions-flips", class: "small"});
  const hiddenBox = h("div", {id: "regions-hidden"});
  fill(panel, h("h2", {}, "Regions"),
    h("div", {class: "small muted"}, "Activation regions: the inputs sharing one pattern of on/off neurons (1 = pre-activation > 0, " +
      "layer 1 first). On each the network is one affine map (piecewise-linear networks; computed exactly)."),
    h("h3", {}, "Slice"), sliceBox, hover, h("h3", {}, "Path"), pathBox, flips, h("h3", {}, "Hidden spaces"), hiddenBox);
  const names = () => app.model.class_names || [];
  const show = (box, p, draw) => {
    if (!p || p.status === "running") { fill(box, h("div", {class: "muted"}, "computing…")); return; }
    if (p.status === "timeout") { fill(box, h("div", {class: "bad"}, p.message || "time limit")); return; }
    if (p.error || p.available === false) { fill(box, h("div", {class: "muted"}, p.error || p.note)); return; }
    draw(p);
  };
  let seq = 0;
  const refreshPath = async () => {
    const mine = ++seq;
    try {
      const p = await app.lens("regions", "path", {...app.input()});
      if (mine === seq) show(pathBox, p, (q) => drawPath(pathBox, flips, q, names()));
    } catch (err) { fill(pathBox, h("div", {class: "bad"}, err.message)); }
  };
  const refreshStatic = async () => {
    try {
      show(sliceBox, await app.lens("regions", "main", {}), (q) => drawSlice(sliceBox, hover, q, names()));
    } catch (err) { fill(sliceBox, h("div", {class: "bad"}, err.message)); }
    try {
      show(hiddenBox, await app.lens("regions", "hidden", {}), (q) => drawHidden(hiddenBox, q, names()));
    } catch (err) { fill(hiddenBox, h("div", {class: "bad"}, err.message)); }
  };
  refreshStatic();
  return {
    input: () => refreshPath(),
    model: () => Promise.all([refreshStatic(), refreshPath()]),
  };
}
