// Truncation maps: a network as maps of its input space onto itself. A toy set moves through the
// maps of a network constructed from its geometry, one map per step, with each map's cone drawn
// (star: base point p; solid rays: edges; green: the cone it fixes; red: the cone it collapses to p);
// hovering a point follows it through every step. Below: this model's identities and cones.
// Everything drawn is a field of the payloads (lenses/truncation/explore.py).

import { h, s, fill, fmt } from "polylens/util.js";

const COLOURS = ["#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#17becf"];
const STATUS = ["fixed", "truncated", "collapsed"];
const SIZE = 360, PAD = 18;

function bounds(points) {
  let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
  for (const [x, y] of points) {
    lo = [Math.min(lo[0], x), Math.min(lo[1], y)];
    hi = [Math.max(hi[0], x), Math.max(hi[1], y)];
  }
  const c = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2];
  const half = Math.max(hi[0] - lo[0], hi[1] - lo[1]) / 2 * 1.25 + 1e-9;
  return {c, half};
}

/** Draw step `step` of a flow payload into `box`; `onHover(i)` when a point is hovered. */
function drawFlow(box, p, step, state) {
  const b = p.shared ? bounds(p.steps.flat()) : bounds(p.steps[step]);
  const sx = (x) => PAD + (x - (b.c[0] - b.half)) / (2 * b.half) * (SIZE - 2 * PAD);
  const sy = (y) => SIZE - PAD - (y - (b.c[1] - b.half)) / (2 * b.half) * (SIZE - 2 * PAD);
  const kids = [s("rect", {x: 0, y: 0, width: SIZE, height: SIZE, fill: "#fff", stroke: "#ccc"})];
  if (step >= 1) {
    const cone = p.cones[step - 1];
    const [px, py] = cone.base;
    const span = 8 * b.half;
    const dirs = cone.edges.map(([ex, ey]) => { const n = Math.hypot(ex, ey) || 1; return [ex / n, ey / n]; });
    if (dirs.length === 2 && cone.relu) {
      const bis = [dirs[0][0] + dirs[1][0], dirs[0][1] + dirs[1][1]];
      const nb = Math.hypot(bis[0], bis[1]);
      if (nb > 1e-9) {
        for (const [sign, colour, cls] of [[1, "#74c476", "cone-forward"], [-1, "#fb6a4a", "cone-backward"]]) {
          const pt = (d, k) => `${sx(px + sign * k * span * d[0])},${sy(py + sign * k * span * d[1])}`;
          const c = [bis[0] / nb, bis[1] / nb];
          kids.push(s("polygon", {class: cls, points: `${sx(px)},${sy(py)} ${pt(dirs[0], 1)} ${pt(c, 2)} ${pt(dirs[1], 1)}`,
                                  fill: colour, "fill-opacity": 0.22, stroke: "none"}));
        }
      }
    }
    for (const d of dirs) {
      kids.push(s("line", {class: "cone-edge", x1: sx(px), y1: sy(py), x2: sx(px + span * d[0]), y2: sy(py + span * d[1]), stroke: "#000", "stroke-width": 1.2}));
      kids.push(s("line", {x1: sx(px), y1: sy(py), x2: sx(px - span * d[0]), y2: sy(py - span * d[1]), stroke: "#000", "stroke-width": 0.6, "stroke-dasharray": "2,3"}));
    }
    kids.push(s("text", {class: "cone-base", x: sx(px), y: sy(py) + 6, "text-anchor": "middle", "font-size": 18}, "★"));
  }
  const classes = [...new Set(p.labels)].sort((a, b) => a - b);
  if (state.hover !== null && p.shared) {
    const path = p.steps.map((st) => `${sx(st[state.hover][0])},${sy(st[state.hover][1])}`).join(" ");
    kids.push(s("polyline", {id: "truncation-path", points: path, fill: "none", stroke: "#000", "stroke-width": 1.5, "stroke-dasharray": "4,2"}));
  }
  p.steps[step].forEach(([x, y], i) => {
    const ci = classes.indexOf(p.labels[i]);
    const on = state.hover === i;
    kids.push(s("circle", {class: "flow-point", cx: sx(x), cy: sy(y), r: on ? 6 : 3.2, "data-i": i,
      fill: COLOURS[ci % COLOURS.length], "fill-opacity": on ? 1 : 0.75, stroke: on ? "#000" : "none",
      onmouseenter: () => state.onHover(i)}));
  });
  fill(box, s("svg", {width: SIZE, height: SIZE, viewBox: `0 0 ${SIZE} ${SIZE}`, class: "flow-svg", "data-step": step}, kids));
}

function follow(p, i) {
  if (i === null) return "Hover a point to follow it through the maps.";
  const parts = [`point #${i} (class ${p.labels[i]})`];
  p.status.forEach((st, l) => parts.push(`map ${l + 1}: ${STATUS[st[i]]}`));
  return parts.join(" → ");
}

/** A flow viewer: step buttons, the plot and the follow line; returns its element. */
function flowViewer(p, id) {
  const state = {step: 0, hover: null, onHover: null};
  const plot = h("div", {class: "flow-plot"});
  const line = h("div", {class: "small", id: `${id}-follow`});
  const caption = h("div", {class: "small muted"});
  const buttons = p.steps.map((_, l) => h("button", {class: "flow-step", "data-step": l, onclick: () => go(l)}, l === 0 ? "input" : `map ${l}`));
  const next = h("button", {class: "flow-next", onclick: () => go((state.step + 1) % p.steps.length)}, "next ▸");
  const go = (l) => {
    state.step = l;
    buttons.forEach((b, k) => b.classList.toggle("active", k === l));
    const c = l >= 1 ? p.cones[l - 1].counts : null;
    caption.textContent = c ? `map ${l}: ${c.fixed} fixed, ${c.truncated} truncated, ${c.collapsed} collapsed` +
      (p.cones[l - 1].relu ? "" : " (sign patterns only: not ReLU)") : `${p.labels.length} points` +
      (p.shared ? "" : " (each step on its own principal plane)");
    drawFlow(plot, p, l, state);
    el.dataset.step = String(l);
  };
  state.onHover = (i) => { state.hover = i; line.textContent = follow(p, i); line.dataset.point = String(i); drawFlow(plot, p, state.step, state); };
  const el = h("div", {class: "flow-viewer", id}, h("div", {class: "flow-buttons"}, buttons, next), plot, caption, line);
  line.textContent = follow(p, null);
  go(0);
  return el;
}

function identityTable(rows) {
  return h("table", {class: "lens-table", id: "truncation-identities"},
    h("thead", {}, h("tr", {}, ["layer", "residual", "holds", "lifted", "reason"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {"data-holds": r.holds ? "1" : "0"},
      h("td", {}, String(r.layer)), h("td", {}, fmt(r.residual, 3)), h("td", {}, r.holds ? "yes" : "no"),
      h("td", {}, r.lifted ? "yes" : "no"), h("td", {}, r.reason || "")))));
}

export function mount(root, app) {
  const panel = h("section", {class: "panel wide", id: "truncation-view"});
  root.appendChild(panel);
  const toyBox = h("div", {id: "truncation-toy"});
  const modelBox = h("div", {id: "truncation-model"}, h("div", {class: "muted"}, "following the model's inputs through its maps…"));
  const select = h("select", {id: "truncation-toy-select", onchange: () => loadToy(select.value)},
    ["sls", "clusters", "rings"].map((t) => h("option", {value: t}, t)));
  const loadToy = async (name) => {
    try {
      const p = await app.lens("truncation", "toy", {toy: name});
      const c = p.construction;
      fill(toyBox, h("div", {class: "small muted"},
        `${name}: a ${p.architecture} ReLU network built from the data's geometry (${c.theorem}; squared loss ${fmt(c.loss, 2)}, ` +
        `${c.formula_counts === "weights" ? c.n_weights + " weights" : c.n_params + " parameters"}, formula ${c.formula_value})` +
        (p.lifted ? "; its first map is lifted through iota (d0 < d1)." : ".")),
        flowViewer(p, "truncation-toy-flow"));
      toyBox.dataset.ready = name;
    } catch (err) { app.error(err); }
  };
  fill(panel, h("h2", {}, "Truncation maps"),
    h("div", {class: "small muted"}, "Each hidden layer is a map of the input space onto itself, " +
      "τ(x) = W⁺(σ(Wx + b) − b) with the cumulative weights; for ReLU it fixes a cone, collapses the opposite " +
      "cone to its base point and projects the rest onto faces. Step through the maps; hover a point to follow it."),
    h("div", {class: "flow-buttons"}, "toy set ", select), toyBox, h("h3", {}, "This model"), modelBox);
  loadToy("sls");
  app.lens("truncation", "main", {}).then((p) => {
    fill(modelBox, h("div", {class: "small muted"}, `${p.architecture} (${p.activation}) on its first ${p.n} test inputs.`),
      p.note ? h("div", {class: "note small"}, p.note) : null,
      identityTable(p.identities), flowViewer(p, "truncation-model-flow"));
    modelBox.dataset.ready = "1";
  }).catch((err) => app.error(err));
  return {};
}
