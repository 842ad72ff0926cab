// The generic view of a lens without a module of its own: its report section (text, tables,
// preformatted blocks and figures), computed once in the background from the lens's "main" payload.

import { h, fill } from "polylens/util.js";

function render(panel, lens, p) {
  const head = h("h2", {}, lens.title);
  if (!p || p.status === "running") {
    fill(panel, head, h("div", {class: "muted lens-status"}, `computing ${lens.name}…`));
    return;
  }
  if (p.status === "error") {
    fill(panel, head, h("div", {class: "bad lens-status"}, p.error));
    return;
  }
  const sec = p.section;
  fill(panel, h("h2", {}, sec.title),
    h("div", {class: "small muted"}, lens.summary),
    sec.note ? h("div", {class: "note small"}, sec.note) : null,
    sec.tables.map((t) => h("div", {class: "table-wrap"}, h("table", {class: "lens-table", "data-table": t.name},
      t.caption ? h("caption", {class: "small"}, t.caption) : null,
      h("thead", {}, h("tr", {}, t.columns.map((c) => h("th", {}, c)))),
      h("tbody", {}, t.rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, v)))))))),
    sec.blocks.map((b) => h("div", {class: "block"}, h("div", {class: "small muted"}, b.caption), h("pre", {}, b.text))),
    h("div", {class: "lens-figures"}, sec.figures.map((f) => h("figure", {},
      h("img", {src: f.src, alt: f.alt || f.caption, class: "lens-figure"}), h("figcaption", {class: "small"}, f.caption)))));
}

export function mount(root, app, lens) {
  const panel = h("section", {class: "panel wide lens-generic", id: `${lens.name}-view`, "data-lens": lens.name});
  root.appendChild(panel);
  app.poll(lens.name, "main", {}, (p) => {
    render(panel, lens, p);
    if (!p || p.status !== "running") panel.dataset.ready = "1";
  });
  return {};
}
