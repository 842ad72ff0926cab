"""What the explorer asks the polytope lens: the exact slice through three test images (hover a
region: its pattern, class and affine map), the exact path from the input on screen to a test image
(the neurons that flip at each crossing), and the 3-D hidden spaces.

Each public function is a :class:`~polylens.lenses.base.Payload` builder ``(session, params) -> dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from polylens.errors import ParameterError
from polylens.lenses.base import LensOptions, option

__all__ = ["HiddenParams", "PathParams", "SliceParams", "hidden_payload", "path_payload", "slice_payload"]


@dataclass(frozen=True)
class SliceParams(LensOptions):
    where = "regions slice"
    i: int | None = option(None, "First test image (default: the first three images of different classes).", lo=0)
    j: int | None = option(None, "Second test image.", lo=0)
    k: int | None = option(None, "Third test image.", lo=0)


@dataclass(frozen=True)
class PathParams(LensOptions):
    where = "regions path"
    to: int | None = option(None, "The test image the path goes to (default: the first one of another class "
                            "than the input's prediction).", lo=0)


@dataclass(frozen=True)
class HiddenParams(LensOptions):
    where = "regions hidden"


def _keys(net) -> list[str]:
    from polylens.nn.network import neuron_ids

    return [str(n) for n in neuron_ids(net)]


def _unavailable(note: str) -> dict:
    return {"available": False, "note": note}


def slice_payload(session, params: Mapping[str, Any]) -> dict:
    """Every region of the plane through test images i, j, k (polygons in (s, t), pattern, class, the
    logits' affine map a + b s + c t on the piece), the decision boundary and the anchors."""
    from polylens.explorer.api import display
    from polylens.lenses.regions.lens import _anchor_triple
    from polylens.lenses.regions.partition import slice_plane
    from polylens.lenses.regions.patterns import convention_note, is_piecewise_linear, to_string

    net = session.network
    if not is_piecewise_linear(net):
        return _unavailable("Exact slices need a piecewise-linear network; " + convention_note(net, "sign") + ".")
    if session.n_samples < 3:
        raise ParameterError(f"The regions slice needs three test images; {session.data_note}")
    idx = [params.get(n) for n in ("i", "j", "k")]
    if any(v is None for v in idx):
        idx = list(_anchor_triple(session.data.y))
    idx = [session.parse_sample(v, "the regions slice") for v in idx]
    x = session.data.x
    a, b, c = idx
    sl = slice_plane(net, x[a], x[b] - x[a], x[c] - x[a])
    regions = [{"pattern": to_string(p.bits), "polygon": display(p.polygon), "area": float(p.area), "class": p.cls,
                "classes": list(p.classes), "map": display(p.logits[p.cls]),
                "cells": [{"class": int(c), "polygon": display(q)} for c, q in p.cells]} for p in sl.pieces]
    return {"available": True, "images": idx, "labels": [int(session.data.y[v]) for v in idx],
            "extent": list(sl.extent), "regions": regions, "count": len(regions), "area": sl.area,
            "boundary": [[list(p), list(q)] for p, q in sl.boundary], "leaves_box": sl.leaves_box,
            "area_in_box": sl.area_in_box, "seconds": sl.seconds, "widths": list(net.hidden_widths),
            "neurons": _keys(net)}


def path_payload(session, params: Mapping[str, Any]) -> dict:
    """The path from the input on screen to test image ``to``: every crossing with the neurons that flip
    there, the pieces' patterns, and the softmax along t (predicted class's probability)."""
    from polylens.explorer.api import display
    from polylens.lenses.regions.partition import segment, segment_sampled
    from polylens.lenses.regions.patterns import convention_note, is_piecewise_linear

    net = session.network
    inp = params["input"]
    x0 = inp.x
    if session.n_samples < 1:
        raise ParameterError(f"The regions path needs test images; {session.data_note}")
    to = params.get("to")
    if to is None:
        pred = int(np.argmax(net(x0[None])[0]))
        others = np.flatnonzero(session.data.y != pred)
        to = int(others[0]) if len(others) else 0
    to = session.parse_sample(to, "the regions path")
    x1 = session.data.x[to]
    exact = is_piecewise_linear(net)
    seg = segment(net, x0, x1) if exact else segment_sampled(net, x0, x1, "sign", n=801)
    t = np.linspace(0.0, 1.0, 201)
    from scipy.special import softmax

    pr = softmax(net(x0[None] + t[:, None] * (x1 - x0)[None]), axis=1)
    keys = _keys(net)
    return {"available": True, "to": to, "label_to": int(session.data.y[to]), "sample": inp.sample,
            "exact": seg.exact, "note": convention_note(net, "sign"), "crossings": seg.crossings.tolist(),
            "patterns": seg.patterns, "flipped": [[keys[j] for j in f] for f in seg.flipped()],
            "t": display(t), "probs": display(pr), "classes": pr.argmax(axis=1).tolist()}


def _plane_polygon(w, b, lo, hi) -> list[list[float]]:
    """The polygon where the plane w . z + b = 0 cuts the box [lo, hi] (vertices in order; [] if none)."""
    w, lo, hi = (np.asarray(v, dtype=np.float64) for v in (w, lo, hi))
    corners = np.array([[(lo, hi)[(m >> k) & 1][k] for k in range(3)] for m in range(8)])
    pts = []
    for m in range(8):
        for k in range(3):
            if (m >> k) & 1:
                continue
            p, q = corners[m], corners[m | (1 << k)]
            fp, fq = w @ p + b, w @ q + b
            if fp == fq:
                continue
            r = fp / (fp - fq)
            if 0 <= r <= 1:
                pts.append(p + r * (q - p))
    if len(pts) < 3:
        return []
    P = np.array(pts)
    c = P.mean(axis=0)
    n = w / (np.linalg.norm(w) or 1.0)
    e1 = np.cross(n, [1.0, 0, 0]) if abs(n[0]) < 0.9 else np.cross(n, [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    ang = np.arctan2((P - c) @ e2, (P - c) @ e1)
    return P[np.argsort(ang)].tolist()


def hidden_payload(session, params: Mapping[str, Any]) -> dict:
    """The 3-D hidden spaces (layers of width 3): test images by class, the next layer's zero planes as
    polygons in the bounding box, and the decision regions on a grid in the last hidden space."""
    from polylens.explorer.api import display
    from polylens.lenses.regions.hidden import hidden_spaces
    from polylens.lenses.regions.patterns import convention_note

    net = session.network
    if session.n_samples < 2:
        raise ParameterError(f"The hidden spaces need test images; {session.data_note}")
    spaces = hidden_spaces(net, session.data.x, session.data.y, "sign", grid=7, max_points=600)
    if not spaces:
        return _unavailable("No hidden layer has three neurons (the 3-D view draws layers of width 3).")
    for s in spaces:
        s["points"] = display(np.asarray(s["points"]))
        for p in s["planes"]:
            p["polygon"] = display(np.asarray(_plane_polygon(p["w"], p["b"], *s["bbox"])).reshape(-1, 3))
        s["grid"]["points"] = display(np.asarray(s["grid"]["points"]))
    return {"available": True, "spaces": spaces, "note": convention_note(net, "sign")}
