"""Activations of one layer of a model, and the model's predictions when that layer is changed.

A :class:`Probe` stands for one layer of one model: a hidden layer of a polylens
:class:`~polylens.nn.network.Network` (numbered from 1, pre- or post-activation), or any named submodule
of a torch module (read with a forward hook). It gives

* ``activations(x)``: an :class:`Activations` value, the layer's vectors over a dataset, computed in
  batches (``units(done, total)`` reports progress) with at most ``max_rows`` rows kept (a seeded
  subset of rows when there are more), so memory is bounded whatever the dataset's size;
* ``logits(x, transform)``: the model's logits when every vector of the layer is replaced by
  ``transform(vectors)`` (ablation), again in batches.

A convolution layer gives one vector per spatial position (its channels); each row then records its
sample and its position, and :attr:`Activations.receptive` holds each position's receptive field in
the input (rows and columns, for showing the patch that drives it).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from polylens.errors import ParameterError

Array = np.ndarray
Units = Callable[[int, int], None]

__all__ = ["Activations", "NetworkProbe", "Probe", "TorchProbe", "make_probe", "receptive_fields"]


def _noop(done: int, total: int) -> None:
    return None


@dataclass(frozen=True, eq=False)
class Activations:
    """The vectors of one layer over a dataset.

    ``values``: float64 (M, w), one row per (sample, position); ``sample`` and ``position``: int64 (M,),
    which sample and which spatial position each row is; ``n``: the number of samples; ``positions``:
    spatial positions per sample (1 for a dense layer); ``spatial``: the layer's (H, W) grid or None;
    ``receptive``: int64 (positions, 4), the input rows [r0, r1) and columns [c0, c1) of each position's
    receptive field (unclipped: it may reach past the image border), or None for a dense layer;
    ``total_rows``: n * positions (``values`` holds a seeded subset when that exceeded the limit).
    """

    values: Array
    sample: Array
    position: Array
    n: int
    positions: int
    spatial: tuple[int, int] | None
    receptive: Array | None
    layer: str
    post: bool
    total_rows: int

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    @property
    def subsampled(self) -> bool:
        return len(self.values) < self.total_rows


def _row_subset(total: int, max_rows: int, seed: int) -> Array | None:
    """Sorted row indices to keep (None: keep every row)."""
    if total <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))


class Probe(abc.ABC):
    """One layer of one model (see the module docstring). Subclasses set ``layer``, ``post``,
    ``width``, ``spatial`` and ``receptive`` and implement ``_batch_vectors`` and ``_batch_logits``."""

    layer: str
    post: bool
    width: int
    spatial: tuple[int, int] | None = None
    receptive: Array | None = None
    kind: str = "network"

    @property
    def positions(self) -> int:
        return 1 if self.spatial is None else int(self.spatial[0] * self.spatial[1])

    @abc.abstractmethod
    def _batch_vectors(self, xb: Array) -> Array:
        """The layer's vectors of a batch: (B * positions, w), sample-major."""

    @abc.abstractmethod
    def _batch_logits(self, xb: Array, transform: Callable[[Array], Array] | None) -> Array:
        """The model's logits of a batch, with ``transform`` applied to the layer's vectors on the way."""

    def activations(self, x: Array, *, batch: int = 256, max_rows: int = 200_000, seed: int = 0,
                    units: Units = _noop) -> Activations:
        """The layer's vectors over the inputs ``x`` (N, d); at most ``max_rows`` rows are kept (a
        subset drawn with ``seed`` when there are more)."""
        x = np.asarray(x, dtype=np.float64)
        n, P = len(x), self.positions
        keep = _row_subset(n * P, int(max_rows), seed)
        parts, samples, positions = [], [], []
        total_batches = max(1, -(-n // batch))
        for b, start in enumerate(range(0, n, batch)):
            xb = x[start:start + batch]
            v = self._batch_vectors(xb)
            rows = np.arange(start * P, (start + len(xb)) * P)
            if keep is not None:
                lo, hi = np.searchsorted(keep, [rows[0], rows[-1] + 1])
                sel = keep[lo:hi] - rows[0]
                v, rows = v[sel], rows[sel]
            parts.append(np.asarray(v, dtype=np.float64))
            samples.append(rows // P)
            positions.append(rows % P)
            units(b + 1, total_batches)
        values = np.concatenate(parts) if parts else np.zeros((0, self.width))
        return Activations(values, np.concatenate(samples).astype(np.int64), np.concatenate(positions).astype(np.int64),
                           n, P, self.spatial, self.receptive, self.layer, self.post, n * P)

    def logits(self, x: Array, transform: Callable[[Array], Array] | None = None, *, batch: int = 512) -> Array:
        """The model's logits on ``x`` with every vector v of the layer replaced by ``transform(v)``
        (rows of a (M, w) array; None: unchanged)."""
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([self._batch_logits(x[s:s + batch], transform) for s in range(0, len(x), batch)])

    def evaluator(self, x: Array) -> Callable[[Callable[[Array], Array] | None], Array]:
        """``transform -> logits on x``, for many transforms of the same inputs (ablation): a probe
        whose rest of the model is cheap keeps the layer's vectors instead of recomputing them."""
        return lambda transform: self.logits(x, transform)


# ---------------------------------------------------------------------------------------------
# A polylens Network


class NetworkProbe(Probe):
    """Hidden layer ``layer`` (1-based) of a :class:`~polylens.nn.network.Network`, before its
    activation function (``post=False``) or after it."""

    kind = "network"

    def __init__(self, network, layer: int, post: bool = False):
        L = network.n_hidden_layers
        if L < 1:
            raise ParameterError(f"The network {network.architecture} has no hidden layer to take a basis of.")
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= L:
            raise ParameterError(f"The '--layer' option of bases must be a hidden layer of {network.architecture}, "
                                 f"an int in [1, {L}]. Got {layer!r} instead.")
        self.network = network
        self.index = int(layer)
        self.layer = str(int(layer))
        self.post = bool(post)
        self.width = int(network.hidden_widths[self.index - 1])
        self._head = network.truncated(self.index)

    def _batch_vectors(self, xb: Array) -> Array:
        a = self._head(xb)
        return self.network.activations[self.index - 1](a) if self.post else a

    def rest(self, v: Array) -> Array:
        """Logits from the layer's vectors ``v`` (N, w) onwards."""
        net, l = self.network, self.index
        z = v if self.post else net.activations[l - 1](v)
        for layer, act in zip(net.layers[l:-1], net.activations[l:]):
            z = act(layer(z))
        return net.layers[-1](z)

    def _batch_logits(self, xb: Array, transform) -> Array:
        v = self._batch_vectors(xb)
        return self.rest(v if transform is None else transform(v))

    def evaluator(self, x: Array):
        V = self._batch_vectors(np.asarray(x, dtype=np.float64))
        return lambda transform: self.rest(V if transform is None else transform(V))


# ---------------------------------------------------------------------------------------------
# A torch module


def _leaf_modules(module) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in module.named_modules() if name and not any(True for _ in m.children())]


def _is_activation(m) -> bool:
    from polylens.nn.torch_io import activation_of

    return activation_of(m) is not None


def receptive_fields(leaves: list[tuple[str, Any]], upto: str, in_hw: tuple[int, int],
                     out_hw: tuple[int, int]) -> Array | None:
    """The input box [r0, r1) x [c0, c1) of each output position of leaf ``upto`` (row-major over
    ``out_hw``), from the convolutions and poolings of the chain before it (None when something
    other than element-wise modules, convolutions and poolings lies on the way)."""
    from torch import nn

    R, J, P = [1, 1], [1, 1], [0, 0]
    for name, m in leaves:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            def pair(v):
                return (v, v) if isinstance(v, int) else tuple(v)
            k, s = pair(m.kernel_size), pair(m.stride)
            p = pair(m.padding) if not isinstance(m.padding, str) else (0, 0)
            d = pair(getattr(m, "dilation", 1))
            for a in range(2):
                P[a] += p[a] * J[a]
                R[a] += (k[a] - 1) * d[a] * J[a]
                J[a] *= s[a]
        elif not (_is_activation(m) or isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity))):
            return None
        if name == upto:
            break
    Ho, Wo = out_hw
    i, j = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
    r0, c0 = i.ravel() * J[0] - P[0], j.ravel() * J[1] - P[1]
    return np.stack([r0, r0 + R[0], c0, c0 + R[1]], axis=1).astype(np.int64)


class TorchProbe(Probe):
    """A named submodule of a torch module, read with a forward hook. ``post``: when the named
    module is followed (in the order of its leaves) by an activation module, that module's output is
    read instead (a named activation module is already "post"). ``input_shape``: the tensor shape of
    one input without the batch axis, e.g. (1, 28, 28); inputs arrive as flat rows and are reshaped."""

    kind = "torch"

    def __init__(self, module, layer: str, input_shape: tuple[int, ...], post: bool = False):
        import torch

        self.module = module.eval()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = next((p.dtype for p in module.parameters()), torch.float32)
        names = dict(module.named_modules())
        leaves = _leaf_modules(module)
        if layer not in names or not layer:
            listed = ", ".join(n for n, _ in leaves)
            raise ParameterError(f"The '--layer' option of bases must name a submodule of this torch model "
                                 f"(one of {listed}). Got {layer!r} instead.")
        target = layer
        order = [n for n, _ in leaves]
        if post and layer in order and not _is_activation(names[layer]):
            i = order.index(layer)
            if i + 1 < len(order) and _is_activation(leaves[i + 1][1]):
                target = order[i + 1]
        self.layer, self.post, self.hooked = str(layer), bool(post), target
        self._target = names[target]
        with torch.no_grad():
            out = self._run(np.zeros((1, int(np.prod(self.input_shape)))), None, capture=True)
        shape = tuple(out.shape[1:])
        if len(shape) == 3:
            self.spatial = (int(shape[1]), int(shape[2]))
            hw = self.input_shape[-2:] if len(self.input_shape) >= 2 else (1, self.input_shape[0])
            self.receptive = receptive_fields(leaves, target, tuple(hw), self.spatial)
        elif len(shape) == 2:  # (C, L): a 1-D convolution, positions along L
            self.spatial = (1, int(shape[1]))
            self.receptive = None
        else:
            self.spatial, self.receptive = None, None
        self.channels_shape = shape
        self.width = int(shape[0]) if len(shape) >= 1 else 1

    def _to_rows(self, out):
        if out.ndim == 2:
            return out
        B, C = out.shape[:2]
        return out.reshape(B, C, -1).permute(0, 2, 1).reshape(-1, C)

    def _from_rows(self, rows, like):
        if like.ndim == 2:
            return rows
        B, C = like.shape[:2]
        return rows.reshape(B, -1, C).permute(0, 2, 1).reshape(like.shape)

    def _run(self, xb: Array, transform, capture: bool = False):
        import torch

        got = {}

        def hook(mod, inp, out):
            if capture:
                got["out"] = out.detach()
                return None
            if transform is None:
                return None
            rows = self._to_rows(out).detach().cpu().numpy().astype(np.float64)
            new = torch.as_tensor(transform(rows), dtype=out.dtype)
            return self._from_rows(new, out)

        h = self._target.register_forward_hook(hook)
        try:
            with torch.no_grad():
                t = torch.as_tensor(np.array(xb).reshape((len(xb),) + self.input_shape), dtype=self.dtype)
                logits = self.module(t)
        finally:
            h.remove()
        return got["out"] if capture else logits

    def _batch_vectors(self, xb: Array) -> Array:
        return self._to_rows(self._run(xb, None, capture=True)).cpu().numpy().astype(np.float64)

    def _split(self):
        """(head, tail) of a top-level ``nn.Sequential`` cut after the hooked child, or None."""
        from torch import nn

        if not isinstance(self.module, nn.Sequential) or self.hooked not in self.module._modules:
            return None
        names = list(self.module._modules)
        i = names.index(self.hooked)
        mods = list(self.module._modules.values())
        return nn.Sequential(*mods[:i + 1]), nn.Sequential(*mods[i + 1:])

    def evaluator(self, x: Array, batch: int = 512):
        """For a Sequential model, the layer's output is computed once and each transform runs only the
        rest of the model (the same numbers as a hook, without recomputing the layers before it)."""
        import torch

        parts = self._split()
        if parts is None:
            return super().evaluator(x)
        head, tail = parts
        x = np.asarray(x, dtype=np.float64)
        outs = []
        with torch.no_grad():
            for s in range(0, len(x), batch):
                t = torch.as_tensor(np.array(x[s:s + batch]).reshape((-1,) + self.input_shape), dtype=self.dtype)
                out = head(t)
                outs.append((out, self._to_rows(out).numpy().astype(np.float64)))

        def run(transform):
            res = []
            with torch.no_grad():
                for out, rows in outs:
                    if transform is not None:
                        out = self._from_rows(torch.as_tensor(transform(rows), dtype=out.dtype), out)
                    res.append(tail(out).numpy().astype(np.float64))
            return np.concatenate(res)

        return run

    def _batch_logits(self, xb: Array, transform) -> Array:
        return self._run(xb, transform).cpu().numpy().astype(np.float64)


def make_probe(model: Any, layer: str | int, post: bool = False, input_shape: tuple[int, ...] | None = None) -> Probe:
    """The probe of ``layer`` of ``model``: a polylens Model or Network (layer a hidden layer's number,
    as an int or its text), a model with a torch ``module`` (layer a submodule's name, or a number for
    the hidden layer of its Network), or a torch module (layer a submodule's name; ``input_shape``
    needed)."""
    text = str(layer).strip()
    module = getattr(model, "module", None)
    bare = False
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            module, model, bare = model, None, True
    except ImportError:  # pragma: no cover
        pass
    if module is not None and (bare or not text.isdigit()):
        shape = input_shape or getattr(model, "module_input_shape", None)
        if shape is None:
            raise ParameterError("A torch module needs the shape of one input (input_shape, e.g. (1, 28, 28)).")
        return TorchProbe(module, text, tuple(shape), post)
    network = getattr(model, "network", model)
    if not text.isdigit():
        raise ParameterError(f"The '--layer' option of bases must be a hidden layer's number (1 = first) for this "
                             f"model. Got {layer!r} instead.")
    return NetworkProbe(network, int(text), post)
