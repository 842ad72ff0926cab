"""Shared fixtures: small random networks of every activation kind, deterministic by seed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

# In CI, property tests draw the same examples every run (a red run must be reproducible); locally they
# explore new examples each time.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from polylens.nn import REGISTRY, ActKind, Activation, Network


def run_cli(*args) -> tuple[int, str, str]:
    """Run ``polylens ARGS`` in-process through main() inside typer's CliRunner isolation (captured
    stdout and stderr); returns (exit code, stdout, stderr)."""
    import sys

    from typer.testing import CliRunner

    from polylens.cli import main

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


def random_network(widths, act, seed=0, scale=1.0) -> Network:
    """A network with the given widths, Gaussian weights of variance scale^2 / fan_in, small biases."""
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(0, scale / np.sqrt(i), (o, i)) for i, o in zip(widths, widths[1:])]
    bs = [rng.normal(0, 0.1, o) for o in widths[1:]]
    if isinstance(act, ActKind):
        act = Activation(act, 0.1 if act is ActKind.LEAKY_RELU else 0.0)
    return Network.from_arrays(Ws, bs, act)


ALL_ACTIVATIONS = [Activation(k, 0.1 if k is ActKind.LEAKY_RELU else 0.0) for k in REGISTRY]


@pytest.fixture(params=ALL_ACTIVATIONS, ids=lambda a: str(a))
def activation(request) -> Activation:
    return request.param
