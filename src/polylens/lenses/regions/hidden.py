"""The 3-D hidden spaces of a network whose hidden layers have three neurons (the seed and its ReLU
twin): the test set in each activation space, and the regions the following layers induce there.

In the space of hidden layer l's outputs z_l, the next layer's pre-activations a_{l+1} = W z_l + b
are affine for any activation, so its neurons' zero planes are exact (its regions are the cells of
that plane arrangement); for the last hidden layer the logits are affine in z_l, so the decision
regions are exact polyhedra, shown on a grid of points classified by the rest of the network.
"""

from __future__ import annotations

import numpy as np

from polylens.lenses.regions.patterns import bits_of, to_string

__all__ = ["hidden_spaces"]


def hidden_spaces(net, x, y, convention: str = "sign", grid: int = 9, max_points: int = 800) -> list[dict]:
    """One entry per hidden layer of width 3: ``points`` (the layer's outputs of up to ``max_points``
    inputs), ``labels``, ``bbox``, ``planes`` (the next hidden layer's neurons: normal w and offset b
    of w . z + b = 0; empty for the last hidden layer), and ``grid``: points of a grid over the bbox
    with the class and the later layers' pattern that the rest of the network gives them."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    keep = np.arange(len(x))[:max_points]
    fp = net.forward(x[keep])
    out = []
    for l, z in enumerate(fp.post):
        if z.shape[1] != 3:
            continue
        lo, hi = z.min(axis=0), z.max(axis=0)
        pad = 0.08 * np.maximum(hi - lo, 1e-6)
        lo, hi = lo - pad, hi + pad
        nxt = net.layers[l + 1]
        planes = ([{"w": nxt.W[j].tolist(), "b": float(nxt.b[j]), "neuron": f"L{l + 2}.n{j}"}
                   for j in range(nxt.out_features)] if l + 1 < len(net.activations) else [])
        g = [np.linspace(lo[k], hi[k], grid) for k in range(3)]
        G = np.stack(np.meshgrid(*g, indexing="ij"), axis=-1).reshape(-1, 3)
        zz, bits = G, []
        for m in range(l + 1, len(net.activations)):
            a = net.layers[m](zz)
            bits.append(bits_of(a, convention))
            zz = net.activations[m](a)
        logits = net.layers[-1](zz)
        pats = np.concatenate(bits, axis=1) if bits else np.zeros((len(G), 0), bool)
        out.append({"layer": l + 1, "points": z.tolist(), "labels": y[keep].tolist(),
                    "bbox": [lo.tolist(), hi.tolist()], "planes": planes,
                    "grid": {"points": G.tolist(), "class": logits.argmax(axis=1).tolist(),
                             "pattern": [to_string(p) for p in pats]}})
    return out
