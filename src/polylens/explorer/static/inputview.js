// The input view: navigate test samples (previous/next, by digit, misclassified, non-robust at the
// current eps) and paint the input directly (click or drag to add ink, or erase). The prediction
// shown comes from the Python forward pass of the painted input.

import { h, s, fill, fmt, ink, imageSvg } from "polylens/util.js";

export class InputView {
  /**
   * root: the section element. opts.onSample(i): go to test sample i. opts.onPaint(x): the painted
   * input changed. opts.onFilter(): a filter changed. opts.canPaint: painting is possible (live mode).
   */
  constructor(root, model, samples, opts) {
    this.root = root;
    this.model = model;
    this.samples = samples;      // {indices, labels, predictions}
    this.opts = opts;
    this.x = null;
    this.sample = null;
    this.robust = null;          // {eps, codes} for the non-robust filter
    this.painting = false;
    this.brush = 1;
    this.filters = {digit: "all", mis: false, nonrobust: false};
    this._build();
  }

  _build() {
    const shape = this.model.input_shape.length === 2 ? this.model.input_shape : [1, this.model.input_shape[0]];
    const [H, W] = shape;
    const cell = Math.max(6, Math.min(26, 182 / Math.max(H, W)));
    this.cellSize = cell;
    this.painter = s("svg", {id: "painter", class: "painter", width: W * cell, height: H * cell,
                             viewBox: `0 0 ${W * cell} ${H * cell}`, role: "img", "aria-label": "input image (paint here)"});
    this.cells = [];
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) {
        const r = s("rect", {class: "cell", "data-index": i * W + j, x: j * cell, y: i * cell, width: cell, height: cell});
        this.cells.push(r);
        this.painter.appendChild(r);
      }
    }
    const paintAt = (e) => {
      const el = document.elementFromPoint(e.clientX, e.clientY);
      if (el && el.classList && el.classList.contains("cell")) this._paint(+el.dataset.index);
    };
    this.painter.addEventListener("pointerdown", (e) => {
      if (!this.opts.canPaint) return;
      e.preventDefault();
      this.painting = true;
      this.painter.setPointerCapture?.(e.pointerId);
      paintAt(e);
    });
    this.painter.addEventListener("pointermove", (e) => { if (this.painting) paintAt(e); });
    const stop = () => { this.painting = false; };
    window.addEventListener("pointerup", stop);
    window.addEventListener("pointercancel", stop);

    const nav = this.model.n_samples > 0;
    this.counter = h("span", {class: "counter", id: "sample-counter"}, "");
    this.digitSel = h("select", {id: "filter-digit", title: "only samples with this label",
                                 onchange: () => { this.filters.digit = this.digitSel.value; this._filterChanged(); }},
      h("option", {value: "all"}, "all digits"),
      this.model.class_names.map((c, k) => h("option", {value: String(k)}, `digit ${c}`)));
    this.misBox = h("input", {type: "checkbox", id: "filter-mis",
                              onchange: () => { this.filters.mis = this.misBox.checked; this._filterChanged(); }});
    this.nrBox = h("input", {type: "checkbox", id: "filter-nonrobust",
                             onchange: () => { this.filters.nonrobust = this.nrBox.checked; this._filterChanged(); }});
    this.nrNote = h("span", {class: "muted", id: "nonrobust-note"}, "");
    this.brushSel = h("span", {class: "brush"},
      h("label", {}, h("input", {type: "radio", name: "brush", value: "1", checked: true,
                                 onchange: () => { this.brush = 1; }}), " ink"),
      h("label", {}, h("input", {type: "radio", name: "brush", value: "0.5",
                                 onchange: () => { this.brush = 0.5; }}), " half"),
      h("label", {}, h("input", {type: "radio", name: "brush", value: "0", id: "brush-erase",
                                 onchange: () => { this.brush = 0; }}), " erase"));
    this.pred = h("div", {class: "prediction", id: "prediction"}, "");
    this.probs = h("div", {class: "probs", id: "probs"});
    this.original = h("div", {class: "original"});
    this.paintNote = h("div", {class: "muted small", id: "paint-note"},
      this.opts.canPaint ? "Click or drag on the image to paint; the prediction follows."
                         : "Painting needs the live server (polylens serve): this static site holds precomputed samples only.");
    fill(this.root,
      h("h2", {}, "Input"),
      nav ? h("div", {class: "nav"},
        h("button", {id: "prev", title: "previous sample (matching the filters)", onclick: () => this.step(-1)}, "◀ prev"),
        this.counter,
        h("button", {id: "next", title: "next sample (matching the filters)", onclick: () => this.step(1)}, "next ▶")) : null,
      nav ? h("div", {class: "filters"},
        this.digitSel,
        h("label", {title: "only samples the network gets wrong"}, this.misBox, " misclassified"),
        this.nrLabel = h("label", {hidden: true}, this.nrBox, h("span", {}, "")),
        this.nrNote) : h("div", {class: "muted"}, this.model.data_note || "No test samples."),
      h("div", {class: "input-row"},
        h("div", {}, this.painter,
          this.opts.canPaint ? h("div", {class: "paint-tools"}, this.brushSel,
            h("button", {id: "clear", onclick: () => this._setAll(0)}, "clear"),
            h("button", {id: "reset", title: "back to the test sample", onclick: () => this.opts.onReset()}, "reset")) : null,
          this.paintNote),
        h("div", {class: "input-side"}, this.pred, this.original)),
      this.probs);
  }

  // -- navigation --------------------------------------------------------------------------------

  /** The sample indices that pass the filters, in order. */
  matching() {
    const {indices, labels, predictions} = this.samples;
    const out = [];
    for (let k = 0; k < indices.length; k++) {
      if (this.filters.digit !== "all" && labels[k] !== +this.filters.digit) continue;
      if (this.filters.mis && labels[k] === predictions[k]) continue;
      if (this.filters.nonrobust) {
        const code = this.robust ? this.robust.codes[k] : null;
        if (code === "v" || code === null || code === undefined) continue;
      }
      out.push(indices[k]);
    }
    return out;
  }

  step(dir) {
    const list = this.matching();
    if (!list.length) {
      this.counter.textContent = "no sample matches";
      return;
    }
    const cur = this.sample ?? -1;
    let next;
    if (dir > 0) next = list.find((i) => i > cur) ?? list[0];
    else next = [...list].reverse().find((i) => i < cur) ?? list[list.length - 1];
    this.opts.onSample(next);
  }

  _filterChanged() {
    this.opts.onFilter(this.filters);
    this._updateCounter();
    const list = this.matching();
    if (list.length && (this.sample === null || !list.includes(this.sample))) this.opts.onSample(list[0]);
  }

  setFilters(f) {
    Object.assign(this.filters, f);
    this.digitSel.value = this.filters.digit;
    this.misBox.checked = this.filters.mis;
    this.nrBox.checked = this.filters.nonrobust;
  }

  /** Offer the status filter of a view (e.g. "non-robust at ε"): {label, title}. */
  enableStatusFilter(filter) {
    if (!this.nrLabel) return;
    this.nrLabel.hidden = false;
    this.nrLabel.title = filter.title || "";
    this.nrLabel.lastChild.textContent = filter.label;
  }

  setRobust(robust, loading = false) {
    this.robust = robust;
    if (loading) this.nrNote.textContent = "certifying every sample…";
    else if (robust && robust.status === "timeout") this.nrNote.textContent = "timed out";
    else if (robust && robust.counts) {
      const c = robust.counts;
      this.nrNote.textContent = `${c.falsified + c.unknown} of ${robust.codes.length} non-robust at ε = ${fmt(robust.eps, 3)}`;
    } else this.nrNote.textContent = "";
    this._updateCounter();
  }

  _updateCounter() {
    if (!this.counter) return;
    const list = this.matching();
    const pos = this.sample === null ? -1 : list.indexOf(this.sample);
    const total = this.samples.indices.length;
    this.counter.textContent = this.sample === null
      ? `drawn input · ${list.length} matching`
      : `#${this.sample} · ${pos >= 0 ? pos + 1 : "–"} of ${list.length}${list.length !== total ? ` (of ${total})` : ""}`;
  }

  // -- painting ------------------------------------------------------------------------------------

  _paint(i) {
    if (!this.x || this.x[i] === this.brush) return;
    this.x = this.x.slice();
    this.x[i] = this.brush;
    this.cells[i].setAttribute("fill", ink(this.x[i]));
    this.opts.onPaint(this.x);
  }

  _setAll(v) {
    if (!this.x) return;
    this.x = this.x.map(() => v);
    this._drawCells();
    this.opts.onPaint(this.x);
  }

  _drawCells() {
    this.x.forEach((v, i) => this.cells[i].setAttribute("fill", ink(v)));
  }

  // -- showing a forward pass -------------------------------------------------------------------------

  /** Show the input and prediction of a forward payload. */
  show(fwd, {sample, drawn}) {
    this.sample = drawn ? null : sample;
    this.x = fwd.x.slice();
    this._drawCells();
    this.cells.forEach((c, i) => c.replaceChildren(s("title", {}, `x[${i}] = ${fmt(this.x[i], 3)}`)));
    const p = fwd.prediction;
    const names = this.model.class_names;
    const label = fwd.label;
    const ok = label === undefined || label === null ? null : label === p;
    fill(this.pred,
      h("div", {class: "pred-main"}, "prediction", h("b", {id: "pred-class", "data-class": p}, names[p]),
        `p = ${fmt(fwd.probs[p], 2)}`),
      label !== undefined && label !== null
        ? h("div", {class: ok ? "ok" : "bad"}, `label ${names[label]} ${ok ? "✓ correct" : "✗ misclassified"}`)
        : h("div", {class: "muted"}, drawn ? (sample !== null && sample !== undefined ? `edited from sample #${sample}` : "drawn input") : ""));
    fill(this.original, fwd.original
      ? h("div", {class: "small muted"}, "original 28×28", imageSvg(fwd.original.flat().map((v) => v / 255), [fwd.original.length, fwd.original[0].length], {size: 64, label: "original image"}))
      : null);
    const pmax = Math.max(...fwd.probs);
    fill(this.probs, h("div", {class: "probbars"}, fwd.probs.map((q, k) =>
      h("div", {class: `probbar${k === p ? " top" : ""}`, title: `class ${names[k]}: p = ${fmt(q, 3)}, logit ${fmt(fwd.logits[k], 3)}`},
        h("div", {class: "probbar-fill", style: `height:${(100 * q / Math.max(pmax, 1e-9)).toFixed(1)}%`}),
        h("div", {class: "probbar-label"}, names[k])))));
    this._updateCounter();
  }
}
