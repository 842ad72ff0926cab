// Signatures: per-digit red/blue maps of which pixels the LP optimum of the digit's logit pushes to the
// ends of their boxes, and envelope tightness bars. Everything drawn is a field of SignatureResult.

import { h, fill, fmt, signed, imageSvg, notReady } from "polylens/util.js";
export function renderSignatures(root, model, payload, onRetry) {
  const head = h("h2", {}, "Signatures");
  if (notReady(root, head, payload, "signatures-status", "computing the constraint signatures (one LP per image)…")) return;
  const r = payload.result;
  const shape = r.input_shape;
  const names = model.class_names;
  const cards = r.digits.map((d, i) => {
    const bars = r.cut_tight_freq.map((layer, l) => {
      const show = payload.cut_show[l];
      return h("div", {class: `envbars${show.length > 8 ? " wide" : ""}`, title: `layer ${l + 1}: how often the lower (left) and upper (right) envelope of each neuron is tight`},
        h("div", {class: "small muted"}, `L${l + 1}`),
        show.map((j) => {
          const [lo, up] = layer[i][j];
          const nm = model.layers[l].neurons[j].name;
          return h("div", {class: "envbar", title: `${nm}: lower side tight ${fmt(lo, 2)}, upper side tight ${fmt(up, 2)}`},
            h("span", {class: "envbar-lo", style: `height:${(100 * (lo ?? 0)).toFixed(0)}%`}),
            h("span", {class: "envbar-up", style: `height:${(100 * (up ?? 0)).toFixed(0)}%`}));
        }));
    });
    return h("figure", {class: "sig-card", "data-digit": d},
      imageSvg(payload.pixel_map[i], shape, {size: 84, mode: "diverging", vmax: 1,
        title: (k) => `pixel ${k}: at upper ${fmt(r.pixel_upper_freq[i][k], 2)}, at lower ${fmt(r.pixel_lower_freq[i][k], 2)}`,
        label: `signature of digit ${names[d]}`}),
      h("figcaption", {}, h("b", {}, `digit ${names[d]}`), h("span", {class: "small muted"}, ` ${r.n_images[i]} img`)),
      h("div", {class: "envbar-wrap"}, bars));
  });
  fill(root, head,
    h("div", {class: "small muted"},
      `At the LP optimum of each digit's logit over the ε = ${fmt(r.eps, 3)} box of its images (${r.sense} ${r.objective}, ` +
      `${r.mode} envelope, ${r.cuts} cuts; up to ${payload.max_per_digit} correctly classified images per digit): ` +
      "blue pixels sit at the upper end of their box (the optimum wants more ink), red at the lower end (less ink). " +
      "Bars: how often each neuron's lower / upper envelope is tight. " +
      `A single image's signature picks its digit by nearest mean ${fmt(100 * r.distinct_accuracy, 1)}% of the time.`),
    h("div", {class: "sig-grid", id: "signature-grid"}, cards),
    h("div", {class: "legend small"}, h("span", {class: "envbar-lo legend-swatch"}), " lower side tight ",
      h("span", {class: "envbar-up legend-swatch"}), " upper side tight"));
}

/** The signatures view: one wide panel, computed once in the background. */
export function mount(root, app) {
  const panel = h("section", {class: "panel wide", id: "signatures-view"});
  root.appendChild(panel);
  app.poll("signatures", "main", {}, (p) => renderSignatures(panel, app.model, p));
  return {};
}
