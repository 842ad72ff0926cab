// Prototypes: for each digit, its best test image moved by the max-margin LP (blue: ink added, red:
// removed), with the real margin before and after and the proven bound. Fields of PrototypeResult.

import { h, fill, fmt, signed, imageSvg, notReady } from "polylens/util.js";
export function renderPrototypes(root, model, payload, onSample) {
  const head = h("h2", {}, "Prototypes");
  if (notReady(root, head, payload, "prototypes-status", "computing the max-margin prototypes…")) return;
  const r = payload.result;
  const shape = r.input_shape;
  const names = model.class_names;
  const cards = r.digits.map((d, i) => h("figure", {class: "proto-card", "data-digit": d},
    h("div", {class: "proto-imgs"},
      h("button", {class: "thumb", title: `start: test sample #${r.start_index[i]} (its best image)`,
                   onclick: () => onSample(r.start_index[i])}, imageSvg(r.start[i], shape, {size: 56, label: "start"})),
      h("span", {class: "arrow"}, "→"),
      imageSvg(r.prototype[i], shape, {size: 56, label: `prototype of ${names[d]}`}),
      imageSvg(r.delta[i], shape, {size: 56, mode: "diverging", label: "change", vmax: Math.max(r.eps, 1e-9)})),
    h("figcaption", {},
      h("b", {}, `digit ${names[d]}`),
      h("div", {class: "small"}, `margin ${signed(r.start_margin[i], 2)} → ${signed(r.prototype_margin[i], 2)}`),
      h("div", {class: "small muted"}, `≤ ${signed(r.margin_upper[i], 2)} anywhere in the ball · ${r.source[i]} · ${r.n_changed[i]} px`))));
  fill(root, head,
    h("div", {class: "small muted"},
      `For each digit, from its best test image, the input within ε = ${fmt(r.eps, 2)} that the LP relaxation says maximises the ` +
      `worst-case margin (L1 price λ = ${fmt(r.lam, 3)}): start → prototype → change (blue more ink, red less, as in the signatures). ` +
      "The bound is rigorous: no input in the ball has a larger margin."),
    h("div", {class: "proto-grid", id: "prototype-grid"}, cards),
    renderStrip(payload.strip, names, shape, onSample));
}

/** One row per digit: its start image, then its prototype at each radius of the strip (1 = the whole
 * box), each with the real margin and the proven bound under it. */
function renderStrip(strip, names, shape, onSample) {
  if (!strip || !strip.eps || !strip.eps.length) return h("div");
  const m = 0;  // the first (only) price of the strip
  const head = h("tr", {}, h("th", {}, "digit"), h("th", {}, "start"),
    ...strip.eps.map((e) => h("th", {}, e >= 1 ? "whole box" : `ε = ${fmt(e, 2)}`)));
  const rows = strip.digits.map((d, i) => h("tr", {"data-digit": d},
    h("th", {}, names[d]),
    h("td", {}, h("button", {class: "thumb", title: `test sample #${strip.start_index[i]}`,
                             onclick: () => onSample(strip.start_index[i])},
                  imageSvg(strip.start[i], shape, {size: 44, label: "start"})),
      h("div", {class: "small"}, signed(strip.start_margin[i], 2))),
    ...strip.eps.map((e, k) => h("td", {},
      imageSvg(strip.prototype[k][m][i], shape, {size: 44, label: `prototype of ${names[d]} at ε ${fmt(e, 2)}`}),
      h("div", {class: "small"}, signed(strip.real_margin[k][m][i], 2)),
      h("div", {class: "small muted"}, `≤ ${signed(strip.margin_upper[k][i], 2)}`)))));
  return h("div", {id: "prototype-strip"},
    h("h3", {}, "What the network would draw: prototypes over growing radii"),
    h("div", {class: "small muted"}, "Under each image: its real margin, and the proven bound on the margin of " +
      "any input in that ball."),
    h("table", {class: "proto-strip"}, h("thead", {}, head), h("tbody", {}, rows)));
}

/** The prototypes view: one wide panel, computed once in the background. */
export function mount(root, app) {
  const panel = h("section", {class: "panel wide", id: "prototypes-view"});
  root.appendChild(panel);
  app.poll("prototypes", "main", {}, (p) => renderPrototypes(panel, app.model, p, (i) => app.setSample(i)));
  return {};
}
