"""``polylens construct DATA.npz --out DIR [--method sls|clustered|simplex]``: a network from geometry.

Reads ``x`` (N, d) and integer labels ``y`` (N,) (the labels y_j are taken as the one-hot vectors
e_j), builds the network of the chosen construction (:mod:`polylens.lenses.truncation.construct`:
CE24 Thm. 5.2 from an SLS certificate, CE24 Prop. 4.1 for clustered data, Ewa25 Thm. 3.3 for one
class inside a simplex) and writes a model directory like ``polylens train`` (``model.safetensors``,
``card.json``) with the training points as ``train.npz``. Its logits on the training points equal
the one-hot labels (zero squared loss up to float64); when the data fails a hypothesis of the
construction the command prints one line naming it and exits 2.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from polylens.cli import app
from polylens.cli._common import JSON_HELP, out_console, print_json
from polylens.errors import ParameterError

__all__ = ["load_labelled_npz"]

METHODS = ("sls", "clustered", "simplex")


def load_labelled_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, d) finite floats and ``y`` (N,) integer labels >= 0 from an .npz file (never
    unpickled); DataError / ParameterError with one line otherwise."""
    from polylens.data.labelled import read_xy_npz

    path = Path(path)
    x, y = read_xy_npz(path)
    if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.number):
        raise ParameterError(f"The data's x must be a numeric array of shape (N, d). Got {x.dtype}{x.shape} instead.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ParameterError(f"The data's x must be finite; {path} has NaN or infinite values.")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise ParameterError("The data's y must hold integer labels.")
    y = y.astype(np.int64).ravel()
    if y.shape != (len(x),):
        raise ParameterError(f"The data has {len(x)} points but {y.shape[0]} labels.")
    if y.min() < 0:
        raise ParameterError(f"The labels must be ints >= 0. Got {int(y.min())} instead.")
    return x, y


@app.command()
def construct(
    data: Path = typer.Argument(..., metavar="DATA.npz", help="An .npz file with x (N, d) and integer labels y (N,)."),
    out: Path = typer.Option(..., "--out", help="Directory to write model.safetensors, card.json and train.npz to."),
    method: str = typer.Option("sls", "--method", help="sls (CE24 Thm. 5.2), clustered (CE24 Prop. 4.1) or "
                               "simplex (Ewa25 Thm. 3.3)."),
    order: Optional[str] = typer.Option(None, "--order", help="sls: check this class order (comma-separated labels) "
                                        "instead of searching."),
    budget: int = typer.Option(200, "--budget", help="sls: LP solves the order search may spend."),
    margin_fraction: float = typer.Option(0.1, "--margin-fraction", help="sls: margin each hyperplane keeps, as a "
                                          "fraction of the best one (smaller: points p_j nearer the barycentre)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Build a ReLU network with zero training loss from the data's geometry, or say which hypothesis fails."""
    from polylens.lenses.truncation import construct as C
    from polylens.lenses.truncation.sls import check_order, find_order
    from polylens.nn.model import Model, ModelCard, save_model

    if method not in METHODS:
        raise ParameterError(f"The '--method' option must be one of {', '.join(map(repr, METHODS))}. Got {method!r} instead.")
    if budget < 1:
        raise ParameterError(f"The '--budget' option must be a positive int. Got {budget} instead.")
    if not 0.0 < margin_fraction <= 1.0:
        raise ParameterError(f"The '--margin-fraction' option must be a float in (0, 1]. Got {margin_fraction} instead.")
    x, y = load_labelled_npz(data)
    cert = None
    if method == "sls":
        if order is not None:
            from polylens.cli._common import parse_int_list

            cert = check_order(x, y, parse_int_list(order, "order", lo=0), margin_fraction=margin_fraction)
        else:
            cert = find_order(x, y, budget=budget, margin_fraction=margin_fraction)
        if not cert.sls:
            raise C.ConstructionError(f"The data is not SLS in any order found within the budget: {cert.reason}")
        built = C.sls_network(x, y, cert)
    elif method == "clustered":
        built = C.clustered_network(x, y)
    else:
        built = C.simplex_network(x, y)
    net = built.network
    d = x.shape[1]
    side = int(round(d ** 0.5))
    shape = (side, side) if side * side == d and d in (49, 196, 784) else (d,)
    if shape != tuple(net.input_shape):
        from polylens.nn import Network

        net = Network(net.layers, net.activations, shape)
    command = " ".join(["polylens", "construct", shlex.quote(str(data)), "--out", shlex.quote(str(out)), "--method", method]
                       + (["--order", order] if order else []))
    summary = built.to_dict()
    card = ModelCard(architecture=net.architecture, activation="relu", input_shape=shape, dataset="unknown",
                     preprocessing={}, split={}, seed=None,
                     training={"constructed": summary, "train_points": int(len(y)), "train_file": "train.npz"},
                     test_accuracy=None, per_class_accuracy=None, command=command)
    save_model(Model(net, card), out)
    np.savez(Path(out) / "train.npz", x=x, y=y)
    result = {"out": str(out), **summary, "n_points": int(len(y)), "sls": None if cert is None else cert.to_dict()}
    if json_out:
        print_json(result)
        return
    con = out_console()
    con.print(f"Constructed [bold]{net.architecture}[/] ReLU network ({built.method}, {summary['theorem']}) in "
              f"[bold]{out}[/]: squared loss {built.loss:.3g} on {len(y)} training points (largest logit error "
              f"{built.max_error:.3g}).")
    counted = built.n_weights if built.counts == "weights" else built.n_params
    con.print(f"{built.counts.capitalize()}: {counted}; formula {built.formula} = {built.formula_value}"
              f" ({'matches' if counted == built.formula_value else 'differs'}).")
    if cert is not None:
        con.print(f"SLS order {list(cert.order)} ({cert.lp_solves} LPs).")
