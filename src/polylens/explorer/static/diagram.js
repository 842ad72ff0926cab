// The network diagram: an SVG with one rect per input pixel, one circle per drawn neuron and logit,
// and the strongest edges between adjacent layers. Which neurons and edges to draw, and every value,
// come from the Python side (api.flow_diagram); this module only lays them out and shows tooltips.

import { s, h, fill, fmt, signed, diverging, ink, maxAbs } from "polylens/util.js";

const W = 800;          // viewBox width
const PAD = 26;

/**
 * A diagram bound to an <svg> container and a shared tooltip element.
 * opts.kind: "network" (edge = weight x activation) or "trace" (edge = flow into one logit).
 * opts.onNeuron(key): a hidden neuron was clicked. opts.onPixel(i): an input pixel was clicked.
 */
export class Diagram {
  constructor(root, tooltip, opts = {}) {
    this.root = root;
    this.tooltip = tooltip;
    this.opts = opts;
    this.model = null;
    this.payload = null;
    this.bounds = null;
    this.boundsEps = null;
    this.selected = null;
    this.nodes = new Map();   // key -> {x, y, r}
    root.addEventListener("mouseover", (e) => this._hover(e));
    root.addEventListener("mousemove", (e) => this._move(e));
    root.addEventListener("mouseout", (e) => {
      if (!e.relatedTarget || !root.contains(e.relatedTarget)) this._hide();
    });
    root.addEventListener("click", (e) => {
      const el = e.target.closest("[data-key]");
      if (!el) return;
      const key = el.dataset.key;
      const node = this.nodes.get(key);
      if (node && node.kind === "neuron" && this.opts.onNeuron) this.opts.onNeuron(key);
    });
  }

  /** Draw. model: the model payload; payload: {x, layers, logits, probs, diagram} (forward) or a trace. */
  render(model, payload) {
    this.model = model;
    this.payload = payload;
    this.nodes.clear();
    const d = payload.diagram;
    const cols = d.columns;
    const nCols = cols.length;
    // Input column geometry.
    const shape = model.input_shape.length === 2 ? model.input_shape : [1, model.input_shape[0]];
    const [Hh, Ww] = shape;
    const cell = Math.max(3, Math.min(26, 250 / Math.max(Hh, Ww)));
    const gridW = cell * Ww, gridH = cell * Hh;
    const hiddenCounts = cols.slice(1).map((c) => c.shown.length + (c.more ? 1 : 0));
    const tallest = Math.max(...hiddenCounts, 1);
    const spacing = Math.max(22, Math.min(60, 440 / tallest));
    this.spacing = spacing;
    const height = Math.max(gridH + 2 * PAD + 30, tallest * spacing + 2 * PAD + 30);
    const x0 = PAD + gridW;             // right edge of the input grid
    const xOut = W - 120;
    const xs = cols.map((c, i) => (i === 0 ? PAD : x0 + 100 + (xOut - x0 - 100) * (i - 1) / Math.max(1, nCols - 2)));
    xs[nCols - 1] = xOut;
    this.root.setAttribute("viewBox", `0 0 ${W} ${height}`);
    this.root.setAttribute("height", height);
    const midY = height / 2 + 8;

    // Node positions.
    const gy0 = midY - gridH / 2;
    cols[0].shown.forEach((i) => {
      const r = Math.floor(i / Ww), c = i % Ww;
      this.nodes.set(`x[${i}]`, {x: PAD + (c + 0.5) * cell, y: gy0 + (r + 0.5) * cell, r: cell / 2, ...this._id(0, i, nCols)});
    });
    // Each column spreads its nodes over the tallest column's height (at most 110 px apart).
    const span = Math.max((tallest - 1) * spacing, 2 * spacing);
    this.colSpacing = [0];
    for (let ci = 1; ci < nCols; ci++) {
      const col = cols[ci];
      const n = col.shown.length + (col.more ? 1 : 0);
      const sp = n > 1 ? Math.min(110, span / (n - 1)) : 0;
      this.colSpacing.push(n > 1 ? sp : 110);
      const top = midY - (n - 1) * sp / 2;
      col.shown.forEach((j, k) => this.nodes.set(this._key(ci, j, nCols), {x: xs[ci], y: top + k * sp, ...this._id(ci, j, nCols)}));
      if (col.more) this.nodes.set(this._key(ci, -1, nCols), {x: xs[ci], y: top + col.shown.length * sp, ...this._id(ci, -1, nCols)});
    }

    const svgEdges = s("g", {class: "edges"});
    d.edges.forEach((e) => {
      const cmax = maxAbs(e.c);
      for (let k = 0; k < e.src.length; k++) {
        const a = this.nodes.get(this._key(e.from, e.src[k], nCols));
        const b = this.nodes.get(this._key(e.to, e.dst[k], nCols));
        if (!a || !b) continue;
        const c = e.c[k];
        const t = cmax > 0 ? Math.abs(c) / cmax : 0;
        const x1 = e.from === 0 ? x0 : a.x, y1 = a.y;
        const dx = (b.x - x1) * 0.45;
        svgEdges.appendChild(s("path", {
          class: `edge ${c >= 0 ? "edge-pos" : "edge-neg"}`,
          d: `M${x1.toFixed(1)},${y1.toFixed(1)} C${(x1 + dx).toFixed(1)},${y1.toFixed(1)} ${(b.x - dx).toFixed(1)},${b.y.toFixed(1)} ${b.x.toFixed(1)},${b.y.toFixed(1)}`,
          "stroke-width": (0.4 + 5.5 * t).toFixed(2), "stroke-opacity": (0.12 + 0.75 * t).toFixed(2),
          "data-edge": `${e.from}:${e.src[k]}:${e.dst[k]}`,
        }));
      }
    });

    const svgNodes = s("g", {class: "nodes"});
    // Input pixels: one rect per pixel, grey level = value (trace: red/blue by flow).
    const xv = this._inputValues();
    const xmax = maxAbs(xv);
    cols[0].shown.forEach((i) => {
      const p = this.nodes.get(`x[${i}]`);
      svgNodes.appendChild(s("rect", {
        class: "pixel", "data-key": `x[${i}]`, x: (p.x - cell / 2).toFixed(2), y: (p.y - cell / 2).toFixed(2),
        width: cell.toFixed(2), height: cell.toFixed(2),
        fill: this.opts.kind === "trace" ? diverging(xv[i], xmax) : ink(xv[i]),
      }));
    });
    svgNodes.appendChild(s("rect", {class: "grid-border", x: PAD, y: gy0, width: gridW, height: gridH}));
    svgNodes.appendChild(s("text", {class: "col-title", x: PAD + gridW / 2, y: gy0 - 10, "text-anchor": "middle"},
      this.opts.kind === "trace" ? "pixel flow" : "input"));

    for (let ci = 1; ci < nCols; ci++) {
      const col = cols[ci];
      const vals = this._columnValues(ci, nCols);
      const vmax = maxAbs(col.shown.map((j) => vals[j]));
      const isOut = ci === nCols - 1;
      svgNodes.appendChild(s("text", {class: "col-title", x: xs[ci], y: PAD - 6, "text-anchor": "middle"},
        isOut ? (this.opts.kind === "trace" ? "logit" : "logits") :
          `layer ${ci}` + (col.more ? ` (${col.shown.length} of ${col.width})` : "")));
      col.shown.forEach((j) => {
        const key = this._key(ci, j, nCols);
        const p = this.nodes.get(key);
        const v = vals[j];
        const rmax = Math.max(5, Math.min(isOut ? 14 : 18, this.colSpacing[ci] / 2 - 1));
        const rmin = Math.min(isOut ? 9 : 6, rmax * 0.5);
        const r = rmin + (rmax - rmin) * Math.sqrt(vmax > 0 ? Math.abs(v) / vmax : 0);
        p.r = r;
        const g = s("g", {class: `node ${isOut ? "out" : "hidden"}`});
        const pred = isOut && this.payload.prediction === j;
        g.appendChild(s("circle", {
          class: `neuron${pred ? " predicted" : ""}${key === this.selected ? " selected" : ""}`, "data-key": key,
          cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: r.toFixed(1), fill: diverging(v ?? 0, vmax),
        }));
        const label = isOut ? `${this.model.class_names[j]}  ${fmt(v, 2)}` : this._name(ci, j);
        const above = !isOut && this.colSpacing[ci] >= 50;
        g.appendChild(s("text", {class: `node-label${pred ? " predicted" : ""}`, "text-anchor": above ? "middle" : "start",
                                 x: (above ? p.x : p.x + r + 5).toFixed(1),
                                 y: (above ? p.y - r - 5 : p.y + 4).toFixed(1)}, label));
        svgNodes.appendChild(g);
      });
      if (col.more) {
        const key = this._key(ci, -1, nCols);
        const p = this.nodes.get(key);
        p.r = 10;
        svgNodes.appendChild(s("g", {class: "node more"},
          s("rect", {class: "more-node", "data-key": key, x: p.x - 16, y: p.y - 10, width: 32, height: 20, rx: 6}),
          s("text", {class: "node-label", x: p.x + 20, y: p.y + 4}, `+${col.more} more`)));
      }
    }
    fill(this.root, svgEdges, svgNodes);
    if (this.tooltipKey) this._showFor(this.tooltipKey);
  }

  setBounds(bounds) {
    this.bounds = bounds;
    if (this.tooltipKey) this._showFor(this.tooltipKey);
  }

  setSelected(key) {
    this.selected = key;
    this.root.querySelectorAll("circle.neuron").forEach((c) => c.classList.toggle("selected", c.dataset.key === key));
  }

  // -- keys and values ---------------------------------------------------------------------------

  /** What a node is, as a value: {kind: "pixel" | "neuron" | "logit" | "more", layer, index}. */
  _id(ci, j, nCols) {
    if (j < 0) return {kind: "more", layer: ci, index: -1};
    if (ci === 0) return {kind: "pixel", layer: 0, index: j};
    if (ci === nCols - 1) return {kind: "logit", layer: ci, index: j};
    return {kind: "neuron", layer: ci, index: j};
  }

  _key(ci, j, nCols) {
    if (ci === 0) return j < 0 ? "x[more]" : `x[${j}]`;
    if (ci === nCols - 1) return j < 0 ? "logit[more]" : `logit[${j}]`;
    return j < 0 ? `L${ci}.more` : `L${ci}.n${j}`;
  }

  _name(layer, j) {
    const n = this.model.layers[layer - 1].neurons[j];
    return n ? n.name : `L${layer}.n${j}`;
  }

  _inputValues() {
    return this.opts.kind === "trace" ? this.payload.pixel_flow : this.payload.x;
  }

  _columnValues(ci, nCols) {
    const p = this.payload;
    if (this.opts.kind === "trace") {
      if (ci === nCols - 1) return p.logits;
      return p.layers[ci - 1].flow;
    }
    if (ci === nCols - 1) return p.logits;
    return p.layers[ci - 1].post;
  }

  // -- tooltips ------------------------------------------------------------------------------------

  _hover(e) {
    const el = e.target.closest("[data-key]");
    if (!el) return;
    this.tooltipKey = el.dataset.key;
    this._showFor(this.tooltipKey);
    this._move(e);
  }

  _move(e) {
    if (this.tooltip.hidden) return;
    const pad = 14;
    const tw = this.tooltip.offsetWidth, th = this.tooltip.offsetHeight;
    let x = e.clientX + pad, y = e.clientY + pad;
    if (x + tw > window.innerWidth - 4) x = e.clientX - tw - pad;
    if (y + th > window.innerHeight - 4) y = Math.max(4, e.clientY - th - pad);
    this.tooltip.style.left = `${x}px`;
    this.tooltip.style.top = `${y}px`;
  }

  _hide() {
    this.tooltipKey = null;
    this.tooltip.hidden = true;
  }

  _showFor(key) {
    const content = this.opts.kind === "trace" ? this._traceTip(key) : this._networkTip(key);
    if (!content) return;
    fill(this.tooltip, content);
    this.tooltip.hidden = false;
  }

  _epsText() {
    return this.bounds ? `ε = ${fmt(this.bounds.eps, 4)}` : "ε";
  }

  _networkTip(key) {
    const p = this.payload;
    const b = this.bounds;
    const node = this.nodes.get(key);
    if (!node) return null;
    if (node.kind === "pixel") {
      const i = node.index;
      const shape = this.model.input_shape;
      const where = shape.length === 2 ? `row ${Math.floor(i / shape[1])}, col ${i % shape[1]}` : `input ${i}`;
      return h("div", {class: "tip"},
        h("div", {class: "tip-title"}, `pixel x[${i}]`, h("span", {class: "tip-key"}, where)),
        h("div", {}, `value ${fmt(p.x[i], 3)}`),
        b ? h("div", {}, `box at ${this._epsText()}: [${fmt(b.input.lower[i], 3)}, ${fmt(b.input.upper[i], 3)}]`)
          : h("div", {class: "muted"}, "box: computing…"));
    }
    if (node.kind === "logit") {
      const k = node.index;
      return h("div", {class: "tip"},
        h("div", {class: "tip-title"}, `class ${this.model.class_names[k]}`, h("span", {class: "tip-key"}, key)),
        h("div", {}, `logit ${fmt(p.logits[k], 3)} · probability ${fmt(p.probs[k], 3)}`),
        b ? h("div", {}, `logit bounds at ${this._epsText()}: [${fmt(b.logits.lower[k], 3)}, ${fmt(b.logits.upper[k], 3)}]`)
          : h("div", {class: "muted"}, "bounds: computing…"));
    }
    if (node.kind === "neuron") {
      const l = node.layer, j = node.index;
      const lay = p.layers[l - 1];
      const name = this._name(l, j);
      const kids = [
        h("div", {class: "tip-title"}, name, name !== key ? h("span", {class: "tip-key"}, key) : null),
        h("div", {}, `pre-activation a = ${fmt(lay.pre[j], 4)}`),
        h("div", {}, `post-activation z = ${fmt(lay.post[j], 4)} (${this.model.layers[l - 1].activation})`),
      ];
      const bl = b && b.layers[l - 1];
      const k = bl ? bl.neurons.indexOf(j) : -1;
      if (bl && k >= 0) {
        const cuts = bl.cuts[k];
        const nLo = cuts.filter((c) => c[0] === 0).length, nUp = cuts.length - nLo;
        kids.push(h("div", {}, `bounds at ${this._epsText()}: a ∈ [${fmt(bl.lower[k], 4)}, ${fmt(bl.upper[k], 4)}]`));
        kids.push(h("div", {}, `z ∈ [${fmt(bl.zlo[k], 4)}, ${fmt(bl.zhi[k], 4)}]`));
        kids.push(h("div", {}, `envelope: ${nLo} lower and ${nUp} upper cuts (${b.envelope})`));
        kids.push(envelopePlot(bl.curve[k], cuts, bl.lower[k], bl.upper[k], lay.pre[j], lay.post[j]));
        const cutText = (c) => h("div", {}, `${c[0] === 0 ? "z ≥" : "z ≤"} ${fmt(c[1], 3)}·a ${c[2] >= 0 ? "+" : "−"} ${fmt(Math.abs(c[2]), 4)}`);
        const lo = cuts.filter((c) => c[0] === 0), up = cuts.filter((c) => c[0] === 1);
        kids.push(h("div", {class: "tip-cuts"}, lo.slice(0, 3).map(cutText),
          lo.length > 3 ? h("div", {class: "muted"}, `… ${lo.length - 3} more lower cuts`) : null,
          up.slice(0, 3).map(cutText),
          up.length > 3 ? h("div", {class: "muted"}, `… ${up.length - 3} more upper cuts`) : null));
      } else {
        kids.push(h("div", {class: "muted"}, b ? "bounds not exported for this neuron" : "bounds and envelope: computing…"));
      }
      kids.push(h("div", {class: "muted"}, "click for the neuron panel"));
      return h("div", {class: "tip"}, kids);
    }
    if (node.kind === "more") {
      return h("div", {class: "tip"}, h("div", {class: "tip-title"}, "folded neurons"),
        h("div", {}, "The neurons with the smallest |activation| are folded into this node;"),
        h("div", {}, "its edges carry their summed contributions w·a."));
    }
    return null;
  }

  _traceTip(key) {
    const p = this.payload;
    const node = this.nodes.get(key);
    if (!node) return null;
    if (node.kind === "pixel") {
      const i = node.index;
      return h("div", {class: "tip"}, h("div", {class: "tip-title"}, `pixel x[${i}]`),
        h("div", {}, `flow into logit[${p.target}] through every path: ${signed(p.pixel_flow[i], 4)}`));
    }
    if (node.kind === "neuron") {
      const l = node.layer, j = node.index;
      const lay = p.layers[l - 1];
      return h("div", {class: "tip"},
        h("div", {class: "tip-title"}, lay.names[j], h("span", {class: "tip-key"}, key)),
        h("div", {}, `activation z = ${fmt(lay.post[j], 4)}, gate g = ${fmt(lay.gate[j], 4)}`),
        h("div", {}, `flow into logit[${p.target}]: ${signed(lay.flow[j], 4)}`),
        h("div", {}, `own constant's flow: ${signed(lay.constant_flow[j], 4)}`));
    }
    if (node.kind === "logit") {
      return h("div", {class: "tip"}, h("div", {class: "tip-title"}, `logit[${node.index}]`),
        h("div", {}, `value ${fmt(p.logits[node.index], 4)}`));
    }
    if (node.kind === "more") {
      return h("div", {class: "tip"}, h("div", {class: "tip-title"}, "folded neurons"),
        h("div", {}, "Neurons with the smallest |flow| are folded into this node; its edges carry their summed flow."));
    }
    return null;
  }
}

/** The activation over [L, U] (sampled by Python), its envelope cuts and the current point. */
function envelopePlot(curve, cuts, L, U, a0, z0) {
  const Wp = 210, Hp = 120, m = 8;
  const [as, zs] = curve;
  // Evaluate every cut at the interval's ends to draw it as a segment (display only).
  const ends = cuts.map((c) => [c[1] * L + c[2], c[1] * U + c[2]]);
  const zsAll = zs.concat(ends.flat()).filter((v) => v !== null && Number.isFinite(v));
  let zmin = Math.min(...zsAll), zmax = Math.max(...zsAll);
  const zspan = Math.max(zmax - zmin, 1e-9);
  zmin -= 0.05 * zspan; zmax += 0.05 * zspan;
  const aspan = Math.max(U - L, 1e-12);
  const X = (a) => m + (Wp - 2 * m) * (a - L) / aspan;
  const Y = (z) => Hp - m - (Hp - 2 * m) * (z - zmin) / (zmax - zmin);
  const g = s("svg", {class: "envplot", width: Wp, height: Hp, viewBox: `0 0 ${Wp} ${Hp}`});
  g.appendChild(s("rect", {x: 0, y: 0, width: Wp, height: Hp, class: "envplot-bg"}));
  cuts.forEach((c, i) => {
    g.appendChild(s("line", {class: c[0] === 0 ? "cut-lower" : "cut-upper", x1: X(L), y1: Y(ends[i][0]), x2: X(U), y2: Y(ends[i][1])}));
  });
  g.appendChild(s("polyline", {class: "curve", points: as.map((a, i) => `${X(a).toFixed(1)},${Y(zs[i]).toFixed(1)}`).join(" ")}));
  if (a0 !== null && a0 >= L - 1e-12 && a0 <= U + 1e-12) g.appendChild(s("circle", {class: "current", cx: X(a0), cy: Y(z0), r: 3.5}));
  return g;
}
