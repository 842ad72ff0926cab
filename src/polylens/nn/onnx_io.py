"""Import a network from ONNX and export one to ONNX.

:func:`from_onnx` follows the data flow of a graph from its one input to its one output and lowers
it to a float64 :class:`~polylens.nn.Network` (see :mod:`polylens.nn.lowering` for the normal form):

* **Affine steps** (fused with their neighbours): ``Gemm`` (alpha, beta, transA, transB, the data
  on either side), ``MatMul`` (a following ``Add`` of a bias is an affine step of its own, in either
  operand order), ``Add``/``Sub``/``Mul``/``Div``/``Neg`` with a constant (element-wise or scalar:
  input normalisation ``(x - mean) / std`` folds into the first layer), ``Conv`` (1-D and 2-D, zero
  padding, lowered to its dense matrix), ``BatchNormalization`` (inference), ``Flatten``,
  ``Reshape`` (the batch axis kept first: ``(N, -1)``, ``(-1, d)``, ``(1, -1)``, ``(batch, d)``),
  ``Transpose``; and the no-ops ``Dropout`` (inference) and ``Cast`` to float/double.
* **Activations**: the single operators in :data:`ONNX_ACTIVATIONS` (``Relu``, ``LeakyRelu``,
  ``Sigmoid``, ``Tanh``, ``Gelu`` of opset 20 with approximate none/tanh, ``Swish`` with alpha 1,
  ``Identity`` between two affine maps); and **compound element-wise subgraphs**: where a tensor
  feeds several nodes that merge back into one tensor (exporters write exact GELU as
  ``x * 0.5 * (1 + erf(x / sqrt 2))`` in several orders, tanh-GELU with ``Pow`` or ``Mul``, SiLU
  as ``x * Sigmoid(x)``), the subgraph is evaluated with ONNX's reference implementation on a
  fixed grid and identified with the registry kind f for which it equals ``a * f(x) + c``
  (``a``, ``c`` fold into the next layer). The grid, the tolerance
  (:data:`~polylens.tolerances.PATTERN_MATCH_TOL`) and the registry decide, so any spelling of a
  known activation is read and a new registry kind is recognised without new code here.
* ``Softmax``/``LogSoftmax`` over the class axis as the last operator is dropped: the Network
  returns the logits, which LPs bound; the predicted class is unchanged (both are increasing).
* Constants come from initializers, ``Constant`` nodes and any subgraph of constants (folded with
  the reference evaluator), including shape arithmetic such as ``Shape -> Gather -> Concat``.

Every data-path operator outside this list is named, with its node, in one
UnsupportedOperatorError. After the import the graph itself is run with the ONNX reference
evaluator on random inputs and must agree with the Network, so a misread graph fails loudly.

:func:`to_onnx` writes Gemm layers and activations (GELU as ``Gelu`` from opset 20, else the Erf
pattern; gelu_tanh as ``Gelu(approximate='tanh')`` from opset 20, else the Tanh pattern; SiLU as
``x * Sigmoid(x)``), input ``"input"`` of shape ``[batch, d]`` and output ``"logits"``.

Example
-------
>>> import numpy as np
>>> from polylens.nn import Network
>>> from polylens.nn.onnx_io import from_onnx, to_onnx
>>> net = Network.from_arrays([np.eye(2), np.ones((1, 2))], [np.zeros(2), np.zeros(1)], "gelu")
>>> [n.op_type for n in to_onnx(net).graph.node]
['Gemm', 'Div', 'Erf', 'Add', 'Mul', 'Mul', 'Gemm']
>>> back = from_onnx(to_onnx(net, dtype="float64"))
>>> str(back.activations[0]), np.array_equal(back.layers[1].W, net.layers[1].W)
('gelu', True)
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from polylens.errors import ModelError, ParameterError, UnsupportedOperatorError
from polylens.nn.activations import REGISTRY, ActKind, Activation
from polylens.nn.lowering import ChainBuilder, conv_as_dense, last_axis_dense, same_padding
from polylens.nn.network import Network
from polylens.tolerances import IMPORT_CHECK_TOL_F32, IMPORT_CHECK_TOL_F64, PATTERN_MATCH_TOL
from polylens.validation import check_int

__all__ = ["ONNX_ACTIVATIONS", "OnnxActivation", "from_onnx", "to_onnx"]

Array = np.ndarray


# ---------------------------------------------------------------------------------------------
# The one table between ONNX operators and activation kinds.


class _Emitter:
    """Collects nodes and scalar initializers while a model is written."""

    def __init__(self, dtype: np.dtype, opset: int):
        self.dtype = dtype
        self.opset = opset
        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []
        self.scope = ""
        self._count: dict[str, int] = {}

    def const(self, name: str, value: float | Array) -> str:
        """Add an initializer (a scalar or an array) in the model's float type; return its name."""
        full = f"{self.scope}/{name}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=self.dtype), full))
        return full

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        k = self._count.get(f"{self.scope}/{op}", 0)
        self._count[f"{self.scope}/{op}"] = k + 1
        name = f"{self.scope}/{op}" + (f"_{k}" if k else "")
        out = f"{name}_output"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def _emit_gelu(e: _Emitter, x: str, a: Activation) -> str:
    if e.opset >= 20:
        return e.node("Gelu", [x])
    t = e.node("Erf", [e.node("Div", [x, e.const("sqrt2", math.sqrt(2.0))])])
    return e.node("Mul", [e.node("Mul", [x, e.node("Add", [t, e.const("one", 1.0)])]), e.const("half", 0.5)])


def _emit_gelu_tanh(e: _Emitter, x: str, a: Activation) -> str:
    if e.opset >= 20:
        return e.node("Gelu", [x], approximate="tanh")
    cube = e.node("Mul", [x, e.node("Mul", [x, x])])
    inner = e.node("Add", [x, e.node("Mul", [e.const("c", 0.044715), cube])])
    t = e.node("Tanh", [e.node("Mul", [e.const("k", math.sqrt(2.0 / math.pi)), inner])])
    return e.node("Mul", [e.const("half", 0.5), e.node("Mul", [x, e.node("Add", [e.const("one", 1.0), t])])])


@dataclass(frozen=True)
class OnnxActivation:
    """How one activation kind is spelt in ONNX.

    ``ops`` are single operators that compute it; ``read(node)`` returns the Activation such a
    node computes, or None when its attributes say otherwise; ``emit`` writes nodes computing it.
    Compound spellings need no entry: :func:`from_onnx` identifies them against the registry.
    """

    kind: ActKind
    ops: tuple[str, ...]
    read: Callable[[NodeProto], Activation | None]
    emit: Callable[[_Emitter, str, Activation], str]


def _attr(node: NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _f32_attr(v: float) -> float:
    """A float attribute (stored as float32) read as the shortest decimal that rounds to it:
    ``LeakyRelu(alpha=0.1)`` gives 0.1, not 0.10000000149."""
    return float(str(np.float32(v)))


def _single(kind: ActKind, op: str) -> OnnxActivation:
    return OnnxActivation(kind, (op,), lambda n: Activation(kind), lambda e, x, a: e.node(op, [x]))


ONNX_ACTIVATIONS: tuple[OnnxActivation, ...] = (
    _single(ActKind.IDENTITY, "Identity"),
    _single(ActKind.RELU, "Relu"),
    OnnxActivation(ActKind.LEAKY_RELU, ("LeakyRelu",),
                   lambda n: Activation(ActKind.LEAKY_RELU, _f32_attr(_attr(n, "alpha", 0.01))),
                   lambda e, x, a: e.node("LeakyRelu", [x], alpha=float(a.alpha))),
    OnnxActivation(ActKind.GELU, ("Gelu",),
                   lambda n: Activation(ActKind.GELU) if _attr(n, "approximate", "none") == "none" else None, _emit_gelu),
    OnnxActivation(ActKind.GELU_TANH, ("Gelu",),
                   lambda n: Activation(ActKind.GELU_TANH) if _attr(n, "approximate", "none") == "tanh" else None,
                   _emit_gelu_tanh),
    _single(ActKind.SIGMOID, "Sigmoid"),
    _single(ActKind.TANH, "Tanh"),
    OnnxActivation(ActKind.SILU, ("Swish",),
                   lambda n: Activation(ActKind.SILU) if float(_attr(n, "alpha", 1.0)) == 1.0 else None,
                   lambda e, x, a: e.node("Mul", [x, e.node("Sigmoid", [x])])),
)

_ACT_BY_OP: dict[str, tuple[OnnxActivation, ...]] = {}
for _e in ONNX_ACTIVATIONS:
    for _op in _e.ops:
        _ACT_BY_OP[_op] = _ACT_BY_OP.get(_op, ()) + (_e,)
_ACT_BY_KIND = {e.kind: e for e in ONNX_ACTIVATIONS}

#: Operators that may appear inside a compound element-wise subgraph (evaluated, then identified).
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Neg", "Reciprocal", "Sqrt", "Exp", "Log", "Erf",
                          "Tanh", "Sigmoid", "Softplus", "Relu", "LeakyRelu", "Abs", "Max", "Min", "Gelu",
                          "Identity", "Swish", "HardSigmoid"})
_FINAL = frozenset({"Softmax", "LogSoftmax"})
_SHAPE_OPS = frozenset({"Shape", "Size"})
_RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                         "Multinomial", "Bernoulli"})
_STRUCTURAL = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Flatten", "Reshape", "Transpose", "Conv",
               "BatchNormalization", "Dropout", "Cast")

#: Operators from_onnx reads on the data path, for error messages.
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(set(_STRUCTURAL) | set(_ACT_BY_OP) | _ELEMENTWISE | _FINAL))

#: Batch size stood in for a symbolic batch axis while shapes are computed: a prime no real
#: feature dimension is expected to equal, so it can be told apart in computed shapes.
_BATCH = 1_000_003


# ---------------------------------------------------------------------------------------------
# Loading.


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load(source: Any) -> tuple[ModelProto, str]:
    """The ModelProto and a short description of where it came from."""
    if isinstance(source, ModelProto):
        model, where = source, "the ModelProto given"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        where = f"the {len(source)} bytes given"
        try:
            model = onnx.load_from_string(bytes(source))
        except Exception as e:
            raise ModelError(f"Could not parse {where} as an ONNX model ({_first_line(e)}).") from None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ModelError(f"No ONNX model file at {path}.")
        try:
            model = onnx.load(str(path))
        except Exception as e:
            raise ModelError(f"Could not read {path} as an ONNX model ({_first_line(e)}).") from None
    else:
        raise ParameterError("The 'model' parameter of from_onnx must be a path, bytes or an onnx.ModelProto. "
                             f"Got {type(source).__name__} instead.")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"{where[0].upper()}{where[1:]} is not a valid ONNX model ({_first_line(e)}).") from None
    return model, where


def _reference(model: ModelProto):
    """ONNX's reference evaluator for ``model``, with float64-faithful Erf and Gelu.

    The reference Erf rounds through float32 and Gelu (a function op) inherits that; both are
    replaced so that float64 graphs are evaluated to float64 accuracy.
    """
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun
    from scipy.special import erf

    class Erf(OpRun):
        op_domain = ""

        def _run(self, x):
            return (erf(x).astype(x.dtype),)

    class Gelu(OpRun):
        op_domain = ""

        def _run(self, x, approximate=None):
            if (approximate or "none") == "tanh":
                y = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
            else:
                y = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
            return (np.asarray(y).astype(x.dtype),)

    return ReferenceEvaluator(model, new_ops=[Erf, Gelu])


def _run(nodes: list[NodeProto], feeds: dict[str, Array], outputs: list[str], opsets) -> list[Array]:
    """Run a list of nodes with ONNX's reference evaluator."""
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for k, v in feeds.items()]
    graph = helper.make_graph(nodes, "part", inputs, [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
                                                       for o in outputs])
    model = helper.make_model(graph, opset_imports=list(opsets))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return _reference(model).run(None, feeds)


# ---------------------------------------------------------------------------------------------
# Import.


@dataclass(frozen=True)
class _T:
    """A data tensor: its name, full shape (``_BATCH`` on the batch axis) and batch axis."""

    name: str
    shape: tuple[int, ...]
    batch: int

    @property
    def features(self) -> tuple[int, ...]:
        return tuple(s for i, s in enumerate(self.shape) if i != self.batch)

    @property
    def unit(self) -> tuple[int, ...]:
        """The shape with a batch of one."""
        return tuple(1 if i == self.batch else s for i, s in enumerate(self.shape))

    @property
    def n(self) -> int:
        return int(np.prod(self.features, dtype=np.int64))


def _node_name(node: NodeProto, index: int) -> str:
    return node.name or f"#{index} (output {node.output[0]!r})"


class _Importer:
    def __init__(self, model: ModelProto):
        g = model.graph
        self.model = model
        self.opsets = list(model.opset_import)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.nodes = list(g.node)
        self.inits = {t.name: t for t in g.initializer}
        inputs = [i for i in g.input if i.name not in self.inits]
        if len(inputs) != 1 or len(g.output) != 1:
            raise ModelError(f"polylens reads graphs with one input and one output; this one has {len(inputs)} "
                             f"inputs ({', '.join(i.name for i in inputs)}) and {len(g.output)} outputs.")
        self.input, self.output = inputs[0], g.output[0].name
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        self.memo: dict[str, Array] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.final: str | None = None
        self._classify()

    # -- structure ---------------------------------------------------------------------------

    def _classify(self) -> None:
        """Find the nodes the output needs, which of them carry data, and every unsupported one."""
        needed: set[int] = set()
        stack = [self.output]
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            i = self.producer.get(t)
            if i is not None and i not in needed:
                needed.add(i)
                stack.extend(x for x in self.nodes[i].input if x)
        self.data = {self.input.name}
        self.consumers: dict[str, list[int]] = {}
        problems: list[str] = []
        for i, node in enumerate(self.nodes):
            if i not in needed:
                continue
            carries = node.op_type not in _SHAPE_OPS and any(x in self.data for x in node.input)
            if carries:
                self.data.update(o for o in node.output if o)
                for x in node.input:
                    if x in self.data:
                        self.consumers.setdefault(x, [])
                        if i not in self.consumers[x]:
                            self.consumers[x].append(i)
            where = _node_name(node, i)
            if node.domain not in ("", "ai.onnx"):
                problems.append(f"{node.domain}.{node.op_type} at node {where}")
            elif node.op_type in _RANDOM_OPS:
                problems.append(f"{node.op_type} at node {where}")
            elif carries and node.op_type not in SUPPORTED_OPS:
                problems.append(f"{node.op_type} at node {where}")
            elif carries and node.op_type in _FINAL and node.output[0] != self.output:
                problems.append(f"{node.op_type} at node {where} (dropped only as the last operator)")
        if self.output not in self.data:
            raise ModelError(f"The output {self.output!r} does not depend on the input {self.input.name!r}.")
        if problems:
            self.unsupported(problems)

    def unsupported(self, problems: list[str]) -> None:
        n = len(problems)
        raise UnsupportedOperatorError(f"{n} unsupported operator{'s' if n > 1 else ''}: {', '.join(problems)}; "
                                       f"supported: {', '.join(SUPPORTED_OPS)}.")

    def fail(self, node: NodeProto, why: str) -> UnsupportedOperatorError:
        i = self.nodes.index(node)
        return UnsupportedOperatorError(f"1 unsupported operator: {node.op_type} at node {_node_name(node, i)} ({why}); "
                                        f"supported: {', '.join(SUPPORTED_OPS)}.")

    # -- constants ---------------------------------------------------------------------------

    def const(self, name: str) -> Array | None:
        """The value of a tensor that does not depend on the input's values, or None."""
        if not name or name in self.data:
            return None
        if name in self.memo:
            return self.memo[name]
        if name in self.inits:
            value = numpy_helper.to_array(self.inits[name])
        else:
            i = self.producer.get(name)
            if i is None:
                return None
            node = self.nodes[i]
            if node.op_type in _SHAPE_OPS:
                shape = self.shapes.get(node.input[0])
                if shape is None:
                    return None
                if node.op_type == "Size":
                    value = np.array(np.prod(shape, dtype=np.int64))
                else:
                    r = len(shape)
                    start, end = _attr(node, "start", 0), _attr(node, "end", r)
                    value = np.array(shape, dtype=np.int64)[slice(start, end)]
            else:
                feeds = {}
                for x in node.input:
                    if x:
                        v = self.const(x)
                        if v is None:
                            return None
                        feeds[x] = v
                outs = [o for o in node.output if o]
                try:
                    values = _run([node], feeds, outs, self.opsets)
                except Exception as e:
                    raise ModelError(f"Could not evaluate the constant node {_node_name(node, i)} "
                                     f"({_first_line(e)}).") from None
                for o, v in zip(outs, values):
                    self.memo[o] = np.asarray(v)
                return self.memo.get(name)
        self.memo[name] = np.asarray(value)
        return self.memo[name]

    def need_const(self, node: NodeProto, name: str, what: str) -> Array:
        v = self.const(name)
        if v is None:
            raise self.fail(node, f"its {what} {name!r} is not a constant")
        return v

    # -- the walk ----------------------------------------------------------------------------

    def walk(self) -> tuple[Network, _T]:
        dims = self.input.type.tensor_type.shape.dim
        if not self.input.type.tensor_type.HasField("shape") or len(dims) < 2:
            raise ModelError(f"The input {self.input.name!r} needs a shape with a batch axis first and static "
                             f"feature axes; got {len(dims)} axes.")
        feats = []
        for k, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise ModelError(f"Axis {k} of the input {self.input.name!r} must be static; got "
                                 f"{d.dim_param or 'unknown'!r}.")
            feats.append(int(d.dim_value))
        elem = self.input.type.tensor_type.elem_type
        if elem not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
            raise ModelError(f"The input {self.input.name!r} has type {TensorProto.DataType.Name(elem)}, "
                             "not a float type.")
        self.static_batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") else None
        st = _T(self.input.name, (_BATCH, *feats), 0)
        chain = ChainBuilder(st.n)
        while True:
            self.shapes[st.name] = st.shape
            if st.name == self.output:
                break
            users = self.consumers.get(st.name, [])
            if len(users) == 1:
                new = self._step(self.nodes[users[0]], st, chain)
                if new is not None:
                    st = new
                    continue
            st = self._cluster(st, chain)
        shape = tuple(feats)
        while len(shape) > 2 and shape[0] == 1:
            shape = shape[1:]
        return chain.build(shape if len(shape) > 1 else None), st

    def _step(self, node: NodeProto, st: _T, chain: ChainBuilder) -> _T | None:
        """Apply one node that is the only reader of ``st``; None to read it as an element-wise subgraph."""
        op = node.op_type
        if op in _HANDLERS:
            new = _HANDLERS[op](self, node, st, chain)
            if new is not None:
                return new
        if op in _ACT_BY_OP and [x for x in node.input if x] == [st.name]:
            for entry in _ACT_BY_OP[op]:
                act = entry.read(node)
                if act is not None:
                    chain.activation(act)
                    return replace(st, name=node.output[0])
        if op in _ELEMENTWISE:
            return None
        if op in _FINAL:
            return self._final(node, st)
        raise self.fail(node, "it cannot be read here")

    def _final(self, node: NodeProto, st: _T) -> _T:
        axis = _attr(node, "axis", 1 if self.opset < 13 else -1)
        if len(st.shape) != 2 or st.batch != 0 or axis not in (1, -1):
            raise self.fail(node, f"over axis {axis} of a tensor of shape {st.features} per sample, not the class axis")
        self.final = node.op_type
        return replace(st, name=node.output[0])

    # -- compound element-wise subgraphs -----------------------------------------------------

    def _cluster(self, st: _T, chain: ChainBuilder) -> _T:
        """Read the nodes from ``st`` to the next single tensor as one element-wise activation.

        The subgraph grows node by node; each time its live tensors merge into one, the function
        from ``st`` to that tensor is evaluated and matched against the registry. Without a match
        it grows on while element-wise nodes follow (``exp(-x)`` alone is no activation,
        ``1 / (1 + exp(-x))`` is one).
        """
        done: list[int] = []
        produced = {st.name}
        while True:
            cands = sorted({i for p in produced for i in self.consumers.get(p, []) if i not in done})
            ready = [i for i in cands
                     if all(x in produced or self.const(x) is not None for x in self.nodes[i].input if x)]
            if not ready or any(self.nodes[i].op_type not in _ELEMENTWISE for i in ready):
                names = ", ".join(f"{self.nodes[i].op_type} at node {_node_name(self.nodes[i], i)}" for i in cands)
                raise UnsupportedOperatorError(
                    f"The tensor {st.name!r} feeds {names}, which do not form one element-wise activation: polylens "
                    "reads chains of affine maps and element-wise activations (no branches or residual connections).")
            i = ready[0]
            node = self.nodes[i]
            for x in node.input:
                if x and x not in produced and self.const(x).size != 1:
                    raise self.fail(node, f"inside an element-wise activation it uses the non-scalar constant {x!r}")
            done.append(i)
            produced.update(o for o in node.output if o)
            for o in node.output:
                self.shapes[o] = st.shape
            live = [p for p in produced
                    if p == self.output or any(j not in done for j in self.consumers.get(p, []))]
            if len(live) != 1 or live[0] == st.name:
                continue
            out = live[0]
            nodes = [self.nodes[j] for j in sorted(done)]
            found = _match(self._evaluate(nodes, st.name, out))
            if found is not None:
                kind, a, c = found
                if kind is not ActKind.IDENTITY:
                    chain.activation(Activation(kind))
                if (a, c) != (1.0, 0.0):
                    chain.elementwise(a, c)
                return replace(st, name=out)
            users = self.consumers.get(out, [])
            if out == self.output or not users or any(self.nodes[j].op_type not in _ELEMENTWISE for j in users):
                described = " -> ".join(n.op_type for n in nodes)
                kinds = ", ".join(k.value for k in REGISTRY if k is not ActKind.LEAKY_RELU)
                raise UnsupportedOperatorError(
                    f"The element-wise subgraph {described} from {st.name!r} to {out!r} matches no activation "
                    f"polylens knows (a * f(x) + c for f in {kinds}).")

    def _evaluate(self, nodes: list[NodeProto], x: str, out: str) -> Array:
        """The element-wise function ``x -> out`` computed by ``nodes``, on the grid, in float64."""
        feeds = {x: _GRID}
        for n in nodes:
            for name in n.input:
                if name and name not in feeds and self.const(name) is not None:
                    v = self.const(name)
                    feeds[name] = v.astype(np.float64) if v.dtype.kind == "f" else v
        try:
            f = np.asarray(_run(nodes, feeds, [out], self.opsets)[0], dtype=np.float64)
        except Exception as e:
            described = " -> ".join(n.op_type for n in nodes)
            raise UnsupportedOperatorError(f"Could not evaluate the element-wise subgraph {described} ending at "
                                           f"{out!r} ({_first_line(e)}).") from None
        return f.reshape(-1) if f.size == _GRID.size else np.full(_GRID.shape, np.nan)


#: Where compound element-wise subgraphs are evaluated: dense over the curved parts of every
#: registry activation, plus far points that pin down the asymptotes.
_GRID = np.concatenate([np.linspace(-30.0, 30.0, 6001), [-1e3, -100.0, 100.0, 1e3]])


def _snap(v: float, scale: float) -> float:
    """Round a fitted coefficient to the nearest multiple of 1/8 when it is that within tolerance."""
    r = round(v * 8.0) / 8.0
    return r if abs(v - r) <= PATTERN_MATCH_TOL * scale else v


def _match(f: Array) -> tuple[ActKind, float, float] | None:
    """The registry kind g and (a, c) with f = a * g(grid) + c to PATTERN_MATCH_TOL, best fit first."""
    if not np.all(np.isfinite(f)):
        return None
    best = None
    ones = np.ones_like(_GRID)
    for kind, spec in REGISTRY.items():
        if kind is ActKind.LEAKY_RELU:  # needs its alpha; the LeakyRelu operator carries it
            continue
        g = spec.fn(_GRID, 0.0)
        (a, c), *_ = np.linalg.lstsq(np.stack([g, ones], axis=1), f, rcond=None)
        err = float(np.max(np.abs(f - (a * g + c)) / (1.0 + np.abs(f))))
        if err <= PATTERN_MATCH_TOL and abs(a) > PATTERN_MATCH_TOL and (best is None or err < best[0]):
            best = (err, kind, _snap(float(a), abs(float(a))), _snap(float(c), 1.0))
    return None if best is None else best[1:]


# -- handlers: each applies one node on the data path, or returns None to decline -------------


def _gemm(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T | None:
    A, B = node.input[0], node.input[1]
    C = node.input[2] if len(node.input) > 2 and node.input[2] else None
    alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
    ta, tb = int(_attr(node, "transA", 0)), int(_attr(node, "transB", 0))
    if len(st.shape) != 2:
        raise imp.fail(node, f"its data input has {len(st.shape)} axes")
    if A == st.name and B != st.name:
        Bm = imp.need_const(node, B, "input B").astype(np.float64)
        Bm = Bm.T if tb else Bm  # (n, m)
        if st.batch != (1 if ta else 0):
            raise imp.fail(node, "transA does not match the layout of its data input")
        W, out_shape, batch, bias_shape = alpha * Bm.T, (_BATCH, Bm.shape[1]), 0, (1, Bm.shape[1])
    elif B == st.name and A != st.name:
        Am = imp.need_const(node, A, "input A").astype(np.float64)
        Am = Am.T if ta else Am  # (m, n)
        if st.batch != (0 if tb else 1):
            raise imp.fail(node, "transB does not match the layout of its data input")
        W, out_shape, batch, bias_shape = alpha * Am, (Am.shape[0], _BATCH), 1, (Am.shape[0], 1)
    else:
        raise imp.fail(node, "both of its inputs carry data")
    if W.shape[1] != st.n:
        raise imp.fail(node, f"its weights take {W.shape[1]} features, the data has {st.n}")
    b = None
    if C is not None:
        c = imp.need_const(node, C, "input C").astype(np.float64)
        try:
            b = beta * np.broadcast_to(c, bias_shape).ravel()
        except ValueError:
            raise imp.fail(node, f"its bias of shape {c.shape} does not broadcast per output") from None
    chain.linear(W, b)
    return _T(node.output[0], out_shape, batch)


def _matmul(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T | None:
    a, b = node.input[0], node.input[1]
    if a == st.name and b != st.name:
        K = imp.need_const(node, b, "second input").astype(np.float64)
        if K.ndim != 2 or st.batch != 0 or st.features[-1] != K.shape[0]:
            raise imp.fail(node, f"a {K.shape} matrix cannot multiply data of shape {st.features} per sample")
        if len(st.features) == 1:
            chain.linear(K.T)
            return _T(node.output[0], (_BATCH, K.shape[1]), 0)
        M, c, feats = last_axis_dense(K.T, None, st.features)
        chain.linear(M, c)
        return _T(node.output[0], (_BATCH, *feats), 0)
    if b == st.name and a != st.name:
        K = imp.need_const(node, a, "first input").astype(np.float64)
        if K.ndim != 2 or len(st.shape) != 2 or st.batch != 1 or K.shape[1] != st.n:
            raise imp.fail(node, f"a {K.shape} matrix cannot multiply data of shape {st.shape} (batch axis {st.batch})")
        chain.linear(K)
        return _T(node.output[0], (K.shape[0], _BATCH), 1)
    return None


def _arith(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T | None:
    a, b = node.input[0], node.input[1]
    if a == b:
        return None
    first = a == st.name
    c = imp.const(b if first else a)
    if c is None:
        return None
    op = node.op_type
    if op == "Div" and not first:
        return None  # c / x is not affine
    try:
        ok = np.broadcast_shapes(st.unit, c.shape) == st.unit
    except ValueError:
        ok = False
    if not ok:
        raise imp.fail(node, f"its constant of shape {c.shape} does not broadcast to the data, "
                             f"{st.unit} per sample with the batch axis")
    v = np.broadcast_to(c.astype(np.float64), st.unit).ravel()
    if op == "Add":
        chain.elementwise(1.0, v)
    elif op == "Sub":
        chain.elementwise(1.0, -v) if first else chain.elementwise(-1.0, v)
    elif op == "Mul":
        chain.elementwise(v, 0.0)
    else:
        with np.errstate(divide="ignore"):
            chain.elementwise(1.0 / v, 0.0)
    return replace(st, name=node.output[0])


def _neg(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    chain.elementwise(-1.0, 0.0)
    return replace(st, name=node.output[0])


def _flatten(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    r = len(st.shape)
    axis = int(_attr(node, "axis", 1))
    axis = axis + r if axis < 0 else axis
    if st.batch != 0 or axis != 1:
        raise imp.fail(node, f"flattening at axis {axis} would merge the batch axis with features")
    return _T(node.output[0], (_BATCH, st.n), 0)


def _reshape(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    target = [int(t) for t in imp.need_const(node, node.input[1], "shape").reshape(-1)]
    if not int(_attr(node, "allowzero", 0)):
        target = [st.shape[k] if t == 0 and k < len(st.shape) else t for k, t in enumerate(target)]
    batch_like = {_BATCH, 1, -1} | ({imp.static_batch} if imp.static_batch else set())
    n = st.n
    if st.batch != 0 or len(target) < 2 or target[0] not in batch_like:
        raise imp.fail(node, f"reshaping to {target} does not keep the batch axis first")
    rest = target[1:]
    if target[0] == -1:
        ok = all(t > 0 for t in rest) and int(np.prod(rest)) == n
    else:
        if rest.count(-1) == 1:
            known = int(np.prod([t for t in rest if t != -1]))
            rest = [n // known if t == -1 else t for t in rest] if known > 0 and n % known == 0 else rest
        ok = all(t > 0 for t in rest) and int(np.prod(rest)) == n
    if not ok:
        raise imp.fail(node, f"reshaping {st.features} per sample to {target} does not keep the batch axis first")
    return _T(node.output[0], (_BATCH, *rest), 0)


def _transpose(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    r = len(st.shape)
    perm = [int(p) for p in _attr(node, "perm", list(range(r))[::-1])]
    idx = np.arange(st.n).reshape(st.unit).transpose(perm)
    chain.permute(idx.ravel())
    return _T(node.output[0], tuple(st.shape[p] for p in perm), perm.index(st.batch))


def _conv(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    if node.input[0] != st.name:
        raise imp.fail(node, "its data is not the first input")
    W = imp.need_const(node, node.input[1], "weights").astype(np.float64)
    B = imp.need_const(node, node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    nsp = W.ndim - 2
    if nsp not in (1, 2):
        raise imp.fail(node, f"it is a {nsp}-D convolution; only 1-D and 2-D convolutions are lowered")
    if st.batch != 0 or len(st.shape) != nsp + 2:
        raise imp.fail(node, f"its data has shape {st.features} per sample")
    spatial = st.features[1:]
    k = list(W.shape[2:])
    strides = list(_attr(node, "strides", [1] * nsp))
    dil = list(_attr(node, "dilations", [1] * nsp))
    auto = _attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [same_padding(spatial[a], k[a], strides[a], dil[a], auto == "SAME_UPPER") for a in range(nsp)]
        pads = [p[0] for p in pairs] + [p[1] for p in pairs]
    elif auto == "VALID":
        pads = [0] * (2 * nsp)
    else:
        pads = list(_attr(node, "pads", [0] * (2 * nsp)))
    M, c, feats = conv_as_dense(W, B, st.features, strides, pads, dil, int(_attr(node, "group", 1)))
    chain.linear(M, c)
    return _T(node.output[0], (_BATCH, *feats), 0)


def _batchnorm(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    if int(_attr(node, "training_mode", 0)) or any(o and o in imp.consumers for o in node.output[1:]):
        raise imp.fail(node, "it runs in training mode")
    if node.input[0] != st.name or st.batch != 0:
        raise imp.fail(node, "its data is not the first input with the batch axis first")
    scale, bias, mean, var = (imp.need_const(node, x, "statistics").astype(np.float64) for x in node.input[1:5])
    s = scale / np.sqrt(var + float(_attr(node, "epsilon", 1e-5)))
    tail = (1,) * (len(st.features) - 1)
    chain.elementwise(np.broadcast_to(s.reshape(-1, *tail), st.features).ravel(),
                      np.broadcast_to((bias - mean * s).reshape(-1, *tail), st.features).ravel())
    return replace(st, name=node.output[0])


def _noop(imp: _Importer, node: NodeProto, st: _T, chain: ChainBuilder) -> _T:
    if node.input[0] != st.name:
        raise imp.fail(node, "its data is not the first input")
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        mode = imp.const(node.input[2])
        if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
            raise imp.fail(node, "it runs in training mode")
    if node.op_type == "Cast" and int(_attr(node, "to", 0)) not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise imp.fail(node, "it casts to a type other than float or double")
    return replace(st, name=node.output[0])


_HANDLERS: dict[str, Callable[[_Importer, NodeProto, _T, ChainBuilder], _T | None]] = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith, "Neg": _neg,
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose, "Conv": _conv,
    "BatchNormalization": _batchnorm, "Dropout": _noop, "Cast": _noop,
}
assert set(_HANDLERS) == set(_STRUCTURAL)


def _verify(imp: _Importer, net: Network, out: _T) -> None:
    """Run the graph with the ONNX reference evaluator and compare with the Network."""
    dtype = helper.tensor_dtype_to_np_dtype(imp.input.type.tensor_type.elem_type)
    n = imp.static_batch or 3
    x = np.random.default_rng(0).standard_normal((n, *imp.shapes[imp.input.name][1:])).astype(dtype)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            y = np.asarray(_reference(imp.model).run([imp.output], {imp.input.name: x})[0], dtype=np.float64)
    except Exception as e:
        raise ModelError(f"Could not run the ONNX model to check the import ({_first_line(e)}); "
                         "pass verify=False to skip the check.") from None
    y = np.moveaxis(y, out.batch, 0).reshape(n, -1)
    z = net(x.reshape(n, -1).astype(np.float64))
    if imp.final is not None:
        z = z - z.max(axis=1, keepdims=True)
        z = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        z = np.exp(z) if imp.final == "Softmax" else z
    tol = IMPORT_CHECK_TOL_F64 if dtype == np.float64 else IMPORT_CHECK_TOL_F32
    if y.shape != z.shape or not np.all(np.abs(y - z) <= tol * (1.0 + np.abs(y))):
        diff = f"max difference {np.max(np.abs(y - z)):.3g}" if y.shape == z.shape else f"shapes {y.shape} vs {z.shape}"
        raise ModelError(f"The imported network disagrees with the ONNX graph on random inputs ({diff}); this is a "
                         "polylens import bug, please report it with the model.")


def from_onnx(model: str | os.PathLike | bytes | ModelProto, *, verify: bool = True) -> Network:
    """Read an ONNX model (a path, its bytes, or a ModelProto) into a float64 Network.

    See the module docstring for what is read and how. ``Network.input_shape`` is the input's
    shape without the batch axis and leading unit axes when it is an image ((1, 1, 7, 7) gives
    (7, 7)). With ``verify`` the graph is run with the ONNX reference evaluator on random inputs
    and must agree with the Network (to 1e-3 relative for float32 graphs, 1e-7 for float64).

    Raises ModelError for a missing or malformed file (one line), UnsupportedOperatorError naming
    every unsupported operator and its node.
    """
    proto, _ = _load(model)
    imp = _Importer(proto)
    net, out = imp.walk()
    if verify:
        _verify(imp, net, out)
    return net


# ---------------------------------------------------------------------------------------------
# Export.


def to_onnx(network: Network, path: str | os.PathLike | None = None, opset: int = 17, *,
            dtype: Any = "float32") -> ModelProto:
    """Write a Network as an ONNX model: one Gemm per layer and the activations between them.

    The input is ``"input"`` of shape ``[batch, d]`` (symbolic batch), the output ``"logits"`` of
    shape ``[batch, n_classes]``. ``dtype`` is float32 (the usual interchange type; weights are
    rounded) or float64 (exact; onnxruntime has no float64 ``Erf``, so GELU networks then run only
    in other runtimes). GELU is the ``Gelu`` operator from opset 20 and the Erf pattern before;
    likewise gelu_tanh with the Tanh pattern; SiLU is ``x * Sigmoid(x)``. Saved when ``path`` is
    given. ``from_onnx(to_onnx(net, dtype="float64"))`` has the weights of ``net`` bit for bit.
    """
    if not isinstance(network, Network):
        raise ParameterError(f"The 'network' parameter of to_onnx must be a Network. Got {type(network).__name__} instead.")
    opset = check_int(opset, "opset", "to_onnx", 13, onnx.defs.onnx_opset_version())
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"The 'dtype' parameter of to_onnx must be one of 'float32', 'float64'. Got {dtype!r} instead.")
    elem = helper.np_dtype_to_tensor_dtype(np_dtype)
    e = _Emitter(np_dtype, opset)
    x = "input"
    last = len(network.layers) - 1
    for i, layer in enumerate(network.layers):
        e.scope = f"/layers.{i}"
        x = e.node("Gemm", [x, e.const("W", layer.W), e.const("b", layer.b)], transB=1)
        if i < last:
            act = network.activations[i]
            e.scope = f"/act.{i}"
            x = _ACT_BY_KIND[act.kind].emit(e, x, act)
    e.nodes[-1].output[0] = "logits"  # the last node is the last layer's Gemm
    graph = helper.make_graph(
        e.nodes, "polylens", [helper.make_tensor_value_info("input", elem, ["batch", network.input_dim])],
        [helper.make_tensor_value_info("logits", elem, ["batch", network.n_classes])], initializer=e.inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="polylens",
                              doc_string=f"polylens network {network.describe()}")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model)
    if path is not None:
        try:
            onnx.save_model(model, os.fspath(path))
        except OSError as err:
            raise ModelError(f"Could not write the ONNX model to {path} ({_first_line(err)}).") from None
    return model
