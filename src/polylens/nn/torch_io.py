"""Import a network from PyTorch and export one to PyTorch.

:func:`from_torch` reads an ``nn.Sequential`` (or any module whose leaf children, in order, form
one; nested Sequentials are flattened) into a :class:`~polylens.nn.Network` in float64:

* ``Linear``, ``Conv1d``/``Conv2d`` (zero padding; lowered to the dense affine map they are, which
  needs ``input_shape``), ``BatchNorm1d``/``BatchNorm2d`` (running statistics, as in eval mode),
  ``Flatten``/``Unflatten`` (over feature axes) and ``Dropout`` (identity, as in eval mode) are
  affine steps; consecutive affine steps are fused into one layer.
* Activations are read through :data:`TORCH_ACTIVATIONS`, the one table from torch module types
  to :class:`~polylens.nn.ActKind` (``GELU(approximate='none')`` is gelu, ``'tanh'`` gelu_tanh).
  ``nn.Identity`` between two affine maps is kept as an identity layer boundary.
* A ``Softmax``/``LogSoftmax`` over the class axis as the very last module is dropped: the Network
  returns the logits before it. Both are strictly increasing per class, so the predicted class is
  unchanged, and the logits are what polylens bounds with its LPs (a margin between logits is
  linear, a margin between probabilities is not).
* Every other module type is an error; all of them are listed in one UnsupportedOperatorError.

After the conversion the original module (a float64 copy, in eval mode) and the Network are run on
a few random inputs and must agree, so a custom ``forward`` that does something its children do
not show (``F.relu``, a residual) fails loudly instead of yielding a wrong Network.

:func:`to_torch` is the exact inverse: ``from_torch(to_torch(net))`` has the same weights, bit for
bit, and the same activations.

Example
-------
>>> import torch
>>> from polylens.nn.torch_io import from_torch, to_torch
>>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.GELU(), torch.nn.Linear(3, 2))
>>> net = from_torch(m, input_shape=(2, 2))
>>> net.architecture, str(net.activations[0]), net.input_shape
('4-3-2', 'gelu', (2, 2))
>>> [type(x).__name__ for x in to_torch(net)]
['Flatten', 'Linear', 'GELU', 'Linear']
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from polylens.errors import ModelError, ParameterError, UnsupportedOperatorError
from polylens.nn.activations import ActKind, Activation
from polylens.nn.lowering import ChainBuilder, conv_as_dense, last_axis_dense, same_padding
from polylens.nn.network import Network

__all__ = ["TORCH_ACTIVATIONS", "TorchActivation", "activation_of", "from_torch", "to_torch"]


@dataclass(frozen=True)
class TorchActivation:
    """How one activation kind is spelt in torch.

    ``read(module)`` returns the Activation a module of type ``module`` computes, or None when its
    settings are another kind's (GELU's ``approximate``); ``make(act)`` builds the module.
    """

    kind: ActKind
    module: type[nn.Module]
    read: Callable[[nn.Module], Activation | None]
    make: Callable[[Activation], nn.Module]


def _plain(kind: ActKind, module: type[nn.Module]) -> TorchActivation:
    return TorchActivation(kind, module, lambda m: Activation(kind), lambda a: module())


def _gelu(kind: ActKind, approximate: str) -> TorchActivation:
    return TorchActivation(kind, nn.GELU, lambda m: Activation(kind) if m.approximate == approximate else None,
                           lambda a: nn.GELU(approximate=approximate))


#: The one table between torch activation modules and activation kinds (import and export).
#: Modules are matched by exact type: a subclass may override ``forward``.
TORCH_ACTIVATIONS: tuple[TorchActivation, ...] = (
    _plain(ActKind.IDENTITY, nn.Identity),
    _plain(ActKind.RELU, nn.ReLU),
    TorchActivation(ActKind.LEAKY_RELU, nn.LeakyReLU, lambda m: Activation(ActKind.LEAKY_RELU, float(m.negative_slope)),
                    lambda a: nn.LeakyReLU(negative_slope=a.alpha)),
    _gelu(ActKind.GELU, "none"),
    _gelu(ActKind.GELU_TANH, "tanh"),
    _plain(ActKind.SIGMOID, nn.Sigmoid),
    _plain(ActKind.TANH, nn.Tanh),
    _plain(ActKind.SILU, nn.SiLU),
)

_BY_KIND = {e.kind: e for e in TORCH_ACTIVATIONS}
_BY_MODULE: dict[type[nn.Module], tuple[TorchActivation, ...]] = {}
for _e in TORCH_ACTIVATIONS:
    _BY_MODULE[_e.module] = _BY_MODULE.get(_e.module, ()) + (_e,)

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Unflatten)
_FINAL = (nn.Softmax, nn.LogSoftmax)
_CONTAINERS = (nn.Sequential, nn.ModuleList)

#: Module types from_torch reads, for error messages.
SUPPORTED_MODULES: tuple[str, ...] = tuple(sorted(
    {t.__name__ for t in (*_AFFINE, *_DROPOUTS)} | {e.module.__name__ for e in TORCH_ACTIVATIONS}
    | {"Sequential", "Softmax (last)", "LogSoftmax (last)"}))


def _leaves(module: nn.Module, prefix: str, out: list[tuple[str, nn.Module]], problems: list[str]) -> None:
    """Flatten containers into (path, leaf) pairs in order."""
    children = [(k, c) for k, c in module._modules.items() if c is not None]  # named_children() skips repeats
    known = type(module) in _BY_MODULE or isinstance(module, (*_AFFINE, *_DROPOUTS, *_FINAL))
    if isinstance(module, _CONTAINERS) and not children:
        return
    if known or not children:
        out.append((prefix or type(module).__name__, module))
        return
    if not isinstance(module, _CONTAINERS) and (any(True for _ in module.parameters(recurse=False))
                                               or any(True for _ in module.buffers(recurse=False))):
        problems.append(f"{type(module).__name__} at {prefix or '(root)'} (has its own parameters besides its children)")
        return
    for name, child in children:
        _leaves(child, f"{prefix}.{name}" if prefix else name, out, problems)


def activation_of(m: nn.Module) -> Activation | None:
    """The polylens activation a torch module computes element-wise (``nn.ReLU``, ``nn.GELU``, ...), or
    None when it is not one polylens knows."""
    for entry in _BY_MODULE.get(type(m), ()):
        act = entry.read(m)
        if act is not None:
            return act
    return None


def _classify(leaves: list[tuple[str, nn.Module]], problems: list[str]) -> int | None:
    """Record every unsupported leaf in ``problems``; return the index of a final softmax, if any."""
    last_real = max((i for i, (_, m) in enumerate(leaves) if not isinstance(m, _DROPOUTS)), default=None)
    final = None
    for i, (path, m) in enumerate(leaves):
        name = type(m).__name__
        if isinstance(m, _FINAL):
            if i != last_real:
                problems.append(f"{name} at {path} (dropped only as the last module)")
            elif m.dim not in (None, 1, -1):
                problems.append(f"{name} at {path} (over dim {m.dim}, not the class axis)")
            else:
                final = i
        elif type(m) in _BY_MODULE:
            if activation_of(m) is None:
                problems.append(f"{name} at {path} ({_settings(m)})")
        elif type(m) in (nn.Conv1d, nn.Conv2d):
            if m.padding_mode != "zeros":
                problems.append(f"{name} at {path} (padding_mode={m.padding_mode!r}; only 'zeros' is lowered)")
        elif type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            if m.running_mean is None or m.running_var is None:
                problems.append(f"{name} at {path} (no running statistics)")
        elif type(m) in (nn.Linear, nn.Flatten, nn.Unflatten) or type(m) in _DROPOUTS:
            pass
        else:
            problems.append(f"{name} at {path}")
    return final


def _settings(m: nn.Module) -> str:
    return getattr(m, "extra_repr", lambda: "")() or "these settings"


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().to(torch.float64).numpy()


class _Walk:
    """Feeds the leaves of a module to a ChainBuilder, tracking the feature shape of one sample."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.chain = ChainBuilder(int(np.prod(shape)))

    def fail(self, path: str, m: nn.Module, why: str) -> ModelError:
        return ModelError(f"{type(m).__name__} at {path} {why} (input of one sample has shape {self.shape}).")

    def step(self, path: str, m: nn.Module) -> None:
        if isinstance(m, _DROPOUTS):
            return
        act = activation_of(m)
        if act is not None:
            self.chain.activation(act)
        elif isinstance(m, nn.Linear):
            self._linear(path, m)
        elif isinstance(m, nn.Flatten):
            self._reshape_axes(path, m, m.start_dim, m.end_dim, None)
        elif isinstance(m, nn.Unflatten):
            self._reshape_axes(path, m, m.dim, m.dim, tuple(m.unflattened_size))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            self._conv(path, m)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self._batchnorm(path, m)
        else:  # pragma: no cover - _classify rejected it
            raise ModelError(f"{type(m).__name__} at {path} is not supported.")

    def _linear(self, path: str, m: nn.Linear) -> None:
        W, b = _np(m.weight), _np(m.bias)
        if self.shape[-1] != m.in_features:
            raise self.fail(path, m, f"takes {m.in_features} features on its last axis")
        if len(self.shape) == 1:
            self.chain.linear(W, b)
            self.shape = (m.out_features,)
        else:  # torch applies Linear along the last axis
            M, c, self.shape = last_axis_dense(W, b, self.shape)
            self.chain.linear(M, c)

    def _reshape_axes(self, path: str, m: nn.Module, start: int, end: int, sizes: tuple[int, ...] | None) -> None:
        rank = len(self.shape) + 1  # with the batch axis
        start, end = start % rank, end % rank
        if start == 0 or end < start:
            raise self.fail(path, m, "would merge the batch axis with features")
        s = list(self.shape)
        i, j = start - 1, end - 1
        if sizes is None:
            new = s[:i] + [int(np.prod(s[i:j + 1]))] + s[j + 1:]
        else:
            if int(np.prod(sizes)) != s[i]:
                raise self.fail(path, m, f"cannot unflatten axis of size {s[i]} to {sizes}")
            new = s[:i] + list(sizes) + s[i + 1:]
        self.shape = tuple(new)  # a C-order reshape of the features: no change to the vector

    def _conv(self, path: str, m: nn.Module) -> None:
        nsp = 1 if isinstance(m, nn.Conv1d) else 2
        if len(self.shape) != nsp + 1 or self.shape[0] != m.in_channels:
            raise self.fail(path, m, f"needs a ({m.in_channels}, {'L' if nsp == 1 else 'H, W'}) input")
        k, s, d = m.kernel_size, m.stride, m.dilation
        if isinstance(m.padding, str):
            if m.padding == "valid":
                pairs = [(0, 0)] * nsp
            else:  # 'same' (stride 1): torch puts the odd extra pixel at the end
                pairs = [same_padding(self.shape[1 + a], k[a], 1, d[a], True) for a in range(nsp)]
        else:
            pairs = [(p, p) for p in m.padding]
        pads = [p[0] for p in pairs] + [p[1] for p in pairs]
        M, c, self.shape = conv_as_dense(_np(m.weight), _np(m.bias), self.shape, s, pads, d, m.groups)
        self.chain.linear(M, c)

    def _batchnorm(self, path: str, m: nn.Module) -> None:
        want = (1, 2) if isinstance(m, nn.BatchNorm1d) else (3,)
        if len(self.shape) not in want or self.shape[0] != m.num_features:
            raise self.fail(path, m, f"needs {m.num_features} channels on the first feature axis")
        var, mean = _np(m.running_var), _np(m.running_mean)
        w = np.ones_like(var) if m.weight is None else _np(m.weight)
        b = np.zeros_like(var) if m.bias is None else _np(m.bias)
        scale = w / np.sqrt(var + m.eps)
        shift = b - mean * scale
        tail = (1,) * (len(self.shape) - 1)
        self.chain.elementwise(np.broadcast_to(scale.reshape(-1, *tail), self.shape).ravel(),
                               np.broadcast_to(shift.reshape(-1, *tail), self.shape).ravel())


def _start_shape(leaves: list[tuple[str, nn.Module]], input_shape: Sequence[int] | None) -> tuple[int, ...]:
    has_conv = any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for _, m in leaves)
    if input_shape is None:
        for path, m in leaves:
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Unflatten)):
                raise ParameterError(f"The 'input_shape' parameter of from_torch must be given (as (C, H, W) or "
                                     f"(H, W)) for a network with {type(m).__name__} (at {path}). Got None instead.")
            if isinstance(m, nn.Linear):
                return (m.in_features,)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                return (m.num_features,)
        raise ModelError("The module has no Linear layer, so its input width is unknown; pass input_shape.")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ParameterError(f"The 'input_shape' parameter of from_torch must be a tuple of positive ints. "
                             f"Got {input_shape!r} instead.")
    if has_conv and len(shape) == 2 and any(isinstance(m, nn.Conv2d) for _, m in leaves):
        shape = (1, *shape)  # (H, W): one channel
    return shape


def from_torch(module: nn.Module, input_shape: Sequence[int] | None = None, *, verify: bool = True) -> Network:
    """Read a feed-forward torch module into a float64 Network (see the module docstring).

    ``input_shape`` is the shape of one sample without the batch axis, e.g. (7, 7) or (1, 7, 7);
    it is required for convolutions and recorded as ``Network.input_shape``. With ``verify`` the
    module and the Network are compared on random inputs (a float64 copy of the module in eval
    mode; the module itself is left untouched) and must agree to 1e-7 relative.

    Raises UnsupportedOperatorError listing every module it cannot read, ModelError when shapes do
    not fit or the module's forward is not its children in order.
    """
    if not isinstance(module, nn.Module):
        raise ParameterError(f"The 'module' parameter of from_torch must be a torch.nn.Module. Got {type(module).__name__} instead.")
    leaves: list[tuple[str, nn.Module]] = []
    problems: list[str] = []
    _leaves(module, "", leaves, problems)
    final = _classify(leaves, problems)
    if problems:
        n = len(problems)
        raise UnsupportedOperatorError(f"{n} unsupported module{'s' if n > 1 else ''}: {', '.join(problems)}; "
                                       f"supported: {', '.join(SUPPORTED_MODULES)}.")
    shape = _start_shape(leaves, input_shape)
    walk = _Walk(shape)
    for i, (path, m) in enumerate(leaves):
        if i != final:
            walk.step(path, m)
    net = walk.chain.build(tuple(input_shape) if input_shape is not None else None)
    if verify:
        _verify(module, net, shape, None if final is None else leaves[final][1])
    return net


def _verify(module: nn.Module, net: Network, shape: tuple[int, ...], final: nn.Module | None) -> None:
    from polylens.tolerances import IMPORT_CHECK_TOL_F64

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, *shape))
    twin = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()
    try:
        with torch.no_grad():
            y = twin(torch.from_numpy(x)).numpy()
    except Exception as e:  # the module's own forward failed on inputs of the declared shape
        raise ModelError(f"The module's forward fails on inputs of shape {(5, *shape)} ({type(e).__name__}: {e}); "
                         "check input_shape.") from None
    z = net(x.reshape(5, -1))
    if final is not None:
        with torch.no_grad():
            z = final(torch.from_numpy(z)).numpy()  # a stateless Softmax / LogSoftmax
    if y.shape != z.shape or not np.all(np.abs(y - z) <= IMPORT_CHECK_TOL_F64 * (1.0 + np.abs(y))):
        diff = float(np.max(np.abs(y - z))) if y.shape == z.shape else None
        raise ModelError(
            "The module's forward does not compute its children in order "
            f"({'output shape ' + str(y.shape) + ' vs ' + str(z.shape) if diff is None else f'max difference {diff:.3g}'}). "
            "from_torch reads a network from its modules, so functional calls in forward (F.relu, residuals) "
            "are invisible: write the network as an nn.Sequential of modules.")


def to_torch(network: Network, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """The Network as an ``nn.Sequential`` of Linear layers and activation modules, in eval mode.

    Weights are copied exactly when ``dtype`` is float64 (the default). A network whose
    ``input_shape`` has more than one axis starts with ``nn.Flatten()``, so it takes images.
    """
    if not isinstance(network, Network):
        raise ParameterError(f"The 'network' parameter of to_torch must be a Network. Got {type(network).__name__} instead.")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ParameterError(f"The 'dtype' parameter of to_torch must be a floating torch.dtype. Got {dtype!r} instead.")
    mods: list[nn.Module] = [nn.Flatten()] if len(network.input_shape) > 1 else []
    for i, layer in enumerate(network.layers):
        lin = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(layer.W)))
            lin.bias.copy_(torch.from_numpy(np.array(layer.b)))
        mods.append(lin)
        if i < len(network.activations):
            act = network.activations[i]
            mods.append(_BY_KIND[act.kind].make(act))
    return nn.Sequential(*mods).eval()
