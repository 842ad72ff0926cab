"""What the explorer asks the truncation lens: the session model's identities, cones and flow
(projected to 2-D), and a toy set's flow through its constructed network, one map per step.

Both payloads give ``steps`` (one list of 2-D points per step l = 0..L-1: x^(tau,l) projected),
``cones`` (each map's base point and edges in the same projection), ``status`` (per map and point:
0 fixed, 1 truncated, 2 collapsed) and ``labels``: the page draws them and follows a hovered point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.jsonio import jsonable
from polylens.lenses.base import LensOptions, Payload, option
from polylens.lenses.truncation.flow import TOYS, analyse, toy_flow

__all__ = ["ToyParams", "main_payload", "main_payload_spec", "toy_payload", "toy_payload_spec"]

#: How many of the session's test inputs the main payload follows.
MAIN_POINTS = 200


@dataclass(frozen=True)
class ToyParams(LensOptions):
    where = "truncation toy"
    toy: str = option("sls", "The toy set.", choices=TOYS)


def _projected(a) -> dict:
    """Steps, cones and statuses of an analysis, each step in its view (:func:`~.flow.step_projections`:
    the plane itself for a 2-D space, each step's principal plane otherwise); ``shared``: every step
    is drawn on the same axes."""
    from polylens.lenses.truncation.flow import step_projections

    pts = a.points
    space = pts[0].shape[1]
    views = step_projections(pts)
    steps = [np.round((p - m) @ B, 6).tolist() for p, (B, m) in zip(pts, views)]
    cones = [{"layer": c.layer, "base": ((c.base - views[c.layer][1]) @ views[c.layer][0]).tolist(),
              "edges": (c.edges.T @ views[c.layer][0]).tolist(), "counts": c.counts(), "relu": c.relu}
             for c in a.cones]
    return {"steps": steps, "cones": cones, "status": [c.status.tolist() for c in a.cones],
            "labels": a.y.tolist(), "space": int(space), "shared": space == 2, "lifted": a.params.lifted,
            "identities": [r.to_dict() for r in a.rows]}


def main_payload(session, params) -> dict:
    """The session model on its first test inputs: identities, cones, the projected flow."""
    net = session.network
    n = min(MAIN_POINTS, session.n_samples)
    if n < 1:
        x = np.zeros((1, net.input_dim))
        y = np.zeros(1, np.int64)
    else:
        x, y = session.data.x[:n], session.data.y[:n]
    a = analyse(net, x, y)
    relu = all(act.kind.value == "relu" for act in net.activations)
    from polylens.lenses.truncation.lens import CONE_NOTE

    acts = ", ".join(sorted({str(act) for act in net.activations})) or "none"
    return jsonable({"status": "ready", "architecture": net.architecture, "activation": acts, "cone_picture": relu,
                     "note": "" if relu else CONE_NOTE.format(act=acts), "n": int(len(x)), **_projected(a)})


def toy_payload(session, params) -> dict:
    """A toy set through its constructed network (see :func:`~.flow.toy_flow`)."""
    t = toy_flow(params.get("toy", "sls"))
    c = t.construction
    return jsonable({"status": "ready", "toy": t.name, "architecture": c.network.architecture,
                     "construction": c.to_dict(), **_projected(t.analysis)})


def main_payload_spec() -> Payload:
    return Payload(main_payload)


def toy_payload_spec() -> Payload:
    return Payload(toy_payload, params=ToyParams, grid=lambda session, grid: [{"toy": t} for t in TOYS])
