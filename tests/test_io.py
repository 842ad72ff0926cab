"""Import and export between polylens Networks, PyTorch and ONNX, checked against second
implementations: torch's own forward pass and onnxruntime. Every activation kind of the registry
round-trips; models written by torch.onnx.export (legacy and dynamo exporters) import with the
logits onnxruntime computes; unsupported models fail with errors that name every culprit."""

from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from polylens import PolylensError
from polylens.errors import ModelError, ParameterError, UnsupportedOperatorError
from polylens.nn import REGISTRY, ActKind, Activation, Network
from polylens.nn.onnx_io import from_onnx, to_onnx
from polylens.nn.torch_io import from_torch, to_torch

from conftest import ALL_ACTIVATIONS, random_network

pytestmark = pytest.mark.filterwarnings("ignore")

ARCHS = [(6, 5, 4, 3), (49, 3, 3, 10)]
ACT_IDS = [str(a) for a in ALL_ACTIVATIONS]


def _net(widths, act: Activation, seed=0) -> Network:
    net = random_network(widths, act, seed=seed)
    if widths[0] == 49:
        net = Network(net.layers, net.activations, (7, 7))
    return net


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _same_weights(a: Network, b: Network) -> None:
    assert len(a.layers) == len(b.layers) and a.activations == b.activations
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)


def test_registry_is_covered():
    """Every registry kind has a torch module and an ONNX spelling (new kinds must add both)."""
    from polylens.nn.onnx_io import ONNX_ACTIVATIONS
    from polylens.nn.torch_io import TORCH_ACTIVATIONS

    assert {e.kind for e in TORCH_ACTIVATIONS} == set(REGISTRY) == {e.kind for e in ONNX_ACTIVATIONS}


# ---------------------------------------------------------------------------------------------
# Round trips for every activation kind.


@pytest.mark.parametrize("widths", ARCHS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=ACT_IDS)
def test_torch_round_trip(act, widths):
    """to_torch computes Network.forward to 1e-10 in float64, and from_torch(to_torch(net)) has the
    same weights bit for bit, the same activations and (given it) the same input shape."""
    net = _net(widths, act)
    module = to_torch(net)
    x = np.random.default_rng(1).normal(0, 2, (64, net.input_dim))
    with torch.no_grad():
        y = module(torch.from_numpy(x.reshape(64, *net.input_shape))).numpy()
    np.testing.assert_allclose(y, net(x), rtol=0, atol=1e-10)
    back = from_torch(module, input_shape=net.input_shape if widths[0] == 49 else None)
    _same_weights(back, net)
    assert back.input_shape == net.input_shape


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("widths", ARCHS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=ACT_IDS)
def test_onnx_round_trip(act, widths, opset):
    """to_onnx in float32 runs in onnxruntime with Network's logits to 1e-5; importing it back gives
    the float32-rounded weights exactly and the same activations; a float64 export comes back
    bit for bit."""
    net = _net(widths, act)
    model = to_onnx(net, opset=opset)
    assert [i.name for i in model.graph.input] == ["input"] and model.graph.output[0].name == "logits"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.random.default_rng(2).normal(0, 2, (64, net.input_dim)).astype(np.float32)
    np.testing.assert_allclose(_ort(model, x), net(x), rtol=1e-5, atol=1e-5)
    back = from_onnx(model)
    rounded = Network.from_arrays([l.W.astype(np.float32) for l in net.layers],
                                  [l.b.astype(np.float32) for l in net.layers], list(net.activations))
    _same_weights(back, rounded)
    np.testing.assert_allclose(back(x), net(x), rtol=1e-5, atol=1e-5)
    _same_weights(from_onnx(to_onnx(net, opset=opset, dtype="float64")), net)


def test_to_onnx_spells_gelu_by_opset(tmp_path):
    """GELU is the Erf pattern before opset 20 and the Gelu operator from 20; gelu_tanh likewise
    with Tanh; SiLU is Sigmoid then Mul; the file is written when a path is given."""
    ops = lambda kind, opset: [n.op_type for n in to_onnx(_net((4, 3, 2), Activation(kind)), opset=opset).graph.node]
    assert ops(ActKind.GELU, 17) == ["Gemm", "Div", "Erf", "Add", "Mul", "Mul", "Gemm"]
    assert ops(ActKind.GELU, 20) == ["Gemm", "Gelu", "Gemm"]
    assert "Tanh" in ops(ActKind.GELU_TANH, 17) and "Gelu" not in ops(ActKind.GELU_TANH, 17)
    assert ops(ActKind.GELU_TANH, 20) == ["Gemm", "Gelu", "Gemm"]
    assert ops(ActKind.SILU, 17) == ["Gemm", "Sigmoid", "Mul", "Gemm"]
    path = tmp_path / "net.onnx"
    net = _net((4, 3, 2), Activation(ActKind.TANH))
    to_onnx(net, path, dtype=np.float64)
    _same_weights(from_onnx(path), net)
    _same_weights(from_onnx(path.read_bytes()), net)


# ---------------------------------------------------------------------------------------------
# Models made elsewhere: torch modules exported by torch.onnx.export.


class Normalize(nn.Module):
    """Input normalisation ``(x - mean) / std`` as a module, as datasets' transforms do it."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("mean", torch.rand(1, 7, 7, generator=g))
        self.register_buffer("std", torch.rand(1, 7, 7, generator=g) + 0.5)

    def forward(self, x):
        return (x - self.mean) / self.std


class ViewNet(nn.Module):
    """A hand-written forward: x.view(x.size(0), -1) (Shape/Gather/Concat when traced), softmax last."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(49, 3), nn.Linear(3, 10)

    def forward(self, x):
        return torch.softmax(self.fc2(torch.relu(self.fc1(x.view(x.size(0), -1)))), dim=1)


def _mlp(act: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(49, 3), act, nn.Linear(3, 3), act, nn.Linear(3, 10))


def _torch_models():
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Flatten(), nn.Linear(49, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 10))
    bn[2].running_mean.uniform_(-1, 1)
    bn[2].running_var.uniform_(0.5, 2)
    return {
        "gelu": _mlp(nn.GELU()), "gelu_tanh": _mlp(nn.GELU(approximate="tanh")), "relu": _mlp(nn.ReLU()),
        "sigmoid": _mlp(nn.Sigmoid()), "tanh": _mlp(nn.Tanh()), "silu": _mlp(nn.SiLU()),
        "leaky_relu": _mlp(nn.LeakyReLU(0.2)),
        "normalized": nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(49, 3), nn.GELU(), nn.Linear(3, 10)),
        "view_softmax": ViewNet(),
        "conv": nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 10)),
        "batchnorm": bn,
    }


MODELS = _torch_models()


def _export(module: nn.Module, dynamo: bool, opset: int, dynamic_batch: bool = True) -> onnx.ModelProto:
    x = torch.randn(4, 1, 7, 7)
    module = module.eval()
    if dynamo:
        shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
        return torch.onnx.export(module, (x,), None, dynamo=True, opset_version=opset, dynamic_shapes=shapes,
                                 verbose=False).model_proto
    f = io.BytesIO()
    axes = {"input": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(module, (x,), f, dynamo=False, opset_version=opset, input_names=["input"], dynamic_axes=axes)
    return onnx.load_from_string(f.getvalue())


def _check_against_ort(model: onnx.ModelProto, net: Network, final=None, n=16) -> None:
    x = np.random.default_rng(5).normal(0, 1, (n, 1, 7, 7)).astype(np.float32)
    y = _ort(model, x)
    z = net(x.reshape(n, -1))
    if final == "softmax":
        z = np.exp(z - z.max(1, keepdims=True))
        z /= z.sum(1, keepdims=True)
    np.testing.assert_allclose(z, y, rtol=1e-5, atol=1e-5)


LEGACY = [(name, 17) for name in MODELS] + [("gelu", 20), ("gelu_tanh", 20), ("normalized", 20)]
DYNAMO = [("gelu", 17), ("gelu_tanh", 17), ("silu", 17), ("normalized", 20), ("view_softmax", 18), ("conv", 18)]


@pytest.mark.parametrize("dynamo,name,opset", [(False, *c) for c in LEGACY] + [(True, *c) for c in DYNAMO],
                         ids=lambda v: {False: "legacy", True: "dynamo"}.get(v, str(v)) if isinstance(v, bool) else str(v))
def test_exported_torch_models_match_onnxruntime(dynamo, name, opset):
    """A torch model exported by torch.onnx.export imports into a Network whose logits equal
    onnxruntime's on random inputs to 1e-5 (after the dropped softmax, where there is one); its
    activation kind is the torch module's; the torch importer reads the same network."""
    module = MODELS[name]
    model = _export(module, dynamo, opset)
    net = from_onnx(model)
    _check_against_ort(model, net, "softmax" if name == "view_softmax" else None)
    if name in ("gelu", "gelu_tanh", "relu", "sigmoid", "tanh", "silu", "normalized"):
        assert net.activation == Activation(ActKind(name if name != "normalized" else "gelu"))
    if name == "leaky_relu":
        assert net.activation == Activation(ActKind.LEAKY_RELU, 0.2)
    assert net.input_shape == (7, 7)
    if name != "normalized" and isinstance(module, nn.Sequential):  # both importers agree
        np.testing.assert_allclose(from_torch(module, input_shape=(1, 7, 7))(np.eye(49)), net(np.eye(49)),
                                   rtol=1e-6, atol=1e-6)


def test_normalisation_is_folded_and_static_batch_is_read():
    """Input normalisation (Sub, Div before the first Gemm) folds into the first layer: the Network
    has exactly the Linear layers of the torch model; a graph exported with a static batch of one,
    input (1, 1, 7, 7), imports with input_shape (7, 7) and accepts any batch."""
    model = _export(MODELS["normalized"], False, 17, dynamic_batch=False)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 1, 7, 7]
    assert {"Sub", "Div"} <= {n.op_type for n in model.graph.node}
    net = from_onnx(model)
    assert net.architecture == "49-3-10" and net.input_shape == (7, 7)
    x = np.random.default_rng(0).normal(size=(4, 1, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(net(x.reshape(4, -1)), _ort(model, x), rtol=1e-5, atol=1e-5)
    m = MODELS["normalized"]
    expect = (x.reshape(4, -1) - m[0].mean.numpy().reshape(-1)) / m[0].std.numpy().reshape(-1)
    np.testing.assert_allclose(net.layers[0](x.reshape(4, -1).astype(np.float64)),
                               (expect @ m[2].weight.detach().numpy().T + m[2].bias.detach().numpy()),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Hand-built ONNX graphs: the spellings of activations and affine maps exporters use.


def _graph(body, inits, n_in=4, opset=17, extra_nodes=(), out="y"):
    """input x (N, n_in) -> Gemm(W1 (3, n_in), b1) -> body(h) -> Gemm(W2 (2, 3), b2) -> y."""
    rng = np.random.default_rng(7)
    tensors = {"W1": rng.normal(size=(3, n_in)), "b1": rng.normal(size=3), "W2": rng.normal(size=(2, 3)),
               "b2": rng.normal(size=2), **inits}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="g1"), *extra_nodes, *body,
             helper.make_node("Gemm", ["a", "W2", "b2"], [out], transB=1, name="g2")]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    return model


def N(op, ins, out, **kw):
    return helper.make_node(op, ins, [out], name=f"n_{out}", **kw)


S2, K = np.sqrt(2.0), np.sqrt(2.0 / np.pi)
PATTERNS = {
    "gelu-legacy": ([N("Div", ["h", "s2"], "d"), N("Erf", ["d"], "e"), N("Add", ["e", "one"], "p"),
                     N("Mul", ["h", "p"], "m"), N("Mul", ["m", "half"], "a")], "gelu"),
    "gelu-dynamo": ([N("Div", ["h", "s2"], "d"), N("Erf", ["d"], "e"), N("Add", ["e", "one"], "p"),
                     N("Mul", ["half", "p"], "m"), N("Mul", ["h", "m"], "a")], "gelu"),
    "gelu-half-first": ([N("Mul", ["h", "half"], "hh"), N("Mul", ["h", "inv_s2"], "d"), N("Erf", ["d"], "e"),
                         N("Add", ["one", "e"], "p"), N("Mul", ["p", "hh"], "a")], "gelu"),
    "gelu-op": ([N("Gelu", ["h"], "a")], "gelu"),
    "gelu_tanh-mul": ([N("Mul", ["h", "h"], "x2"), N("Mul", ["h", "x2"], "x3"), N("Mul", ["c", "x3"], "t"),
                       N("Add", ["h", "t"], "u"), N("Mul", ["k", "u"], "v"), N("Tanh", ["v"], "w"),
                       N("Add", ["one", "w"], "p"), N("Mul", ["h", "p"], "m"), N("Mul", ["half", "m"], "a")],
                      "gelu_tanh"),
    "gelu_tanh-pow": ([N("Pow", ["h", "three"], "x3"), N("Mul", ["c", "x3"], "t"), N("Add", ["h", "t"], "u"),
                       N("Mul", ["k", "u"], "v"), N("Tanh", ["v"], "w"), N("Add", ["w", "one"], "p"),
                       N("Mul", ["half", "p"], "m"), N("Mul", ["h", "m"], "a")], "gelu_tanh"),
    "gelu_tanh-op": ([N("Gelu", ["h"], "a", approximate="tanh")], "gelu_tanh"),
    "silu": ([N("Sigmoid", ["h"], "s"), N("Mul", ["h", "s"], "a")], "silu"),
    "silu-swapped": ([N("Sigmoid", ["h"], "s"), N("Mul", ["s", "h"], "a")], "silu"),
    "sigmoid-by-exp": ([N("Neg", ["h"], "n"), N("Exp", ["n"], "e"), N("Add", ["one", "e"], "p"),
                        N("Reciprocal", ["p"], "a")], "sigmoid"),
    "scaled-tanh": ([N("Tanh", ["h"], "t"), N("Mul", ["t", "three"], "a")], "tanh"),
}
CONSTS = {"s2": S2, "inv_s2": 1 / S2, "one": 1.0, "half": 0.5, "c": 0.044715, "k": K, "three": 3.0}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_activation_spellings(name):
    """Each way exporters spell an activation (Erf and Tanh patterns of GELU in several orders, the
    Gelu operator, x * Sigmoid(x), 1 / (1 + exp(-x)), a rescaled tanh) is read as its registry kind,
    with logits equal to onnxruntime's to 1e-5."""
    body, kind = PATTERNS[name]
    opset = 20 if "op" in name.split("-")[-1] else 17
    model = _graph(body, CONSTS, opset=opset)
    net = from_onnx(model)
    assert net.activations == (Activation(ActKind(kind)),)
    x = np.random.default_rng(0).normal(0, 3, (32, 4)).astype(np.float32)
    np.testing.assert_allclose(net(x), _ort(model, x), rtol=1e-5, atol=1e-5)


def test_pattern_constants_may_come_from_constant_nodes():
    """The GELU pattern's constants as Constant nodes (not initializers) are read the same way."""
    consts = [helper.make_node("Constant", [], [k], value=numpy_helper.from_array(np.array(v, np.float32)))
              for k, v in CONSTS.items()]
    model = _graph(PATTERNS["gelu-legacy"][0], {}, extra_nodes=consts)
    assert from_onnx(model).activations == (Activation(ActKind.GELU),)


def test_swish_operator():
    """The Swish operator (opset 24) with alpha 1 is SiLU; with alpha 2 it is no registry kind."""
    assert from_onnx(_graph([N("Swish", ["h"], "a")], {}, opset=24)).activations == (Activation(ActKind.SILU),)
    with pytest.raises(UnsupportedOperatorError, match="matches no activation"):
        from_onnx(_graph([N("Swish", ["h"], "a", alpha=2.0)], {}, opset=24))


def test_unknown_elementwise_function_is_refused():
    """x * tanh(x) is element-wise but no registry kind: the error says so and names the operators."""
    with pytest.raises(UnsupportedOperatorError, match=r"Tanh -> Mul.*matches no activation"):
        from_onnx(_graph([N("Tanh", ["h"], "t"), N("Mul", ["h", "t"], "a")], {}))


def _affine_model(nodes, inits, n_in=4):
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _affine_cases():
    rng = np.random.default_rng(11)
    W, Wt, b, V = rng.normal(size=(3, 4)), rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(2, 3))
    c = {"W": W, "Wt": Wt, "b": b, "bcol": b[:, None], "V": V, "Vt": V.T, "b2": rng.normal(size=2)}
    bias_node = helper.make_node("Constant", [], ["bc"], value=numpy_helper.from_array(b.astype(np.float32)))
    tail = [N("Relu", ["h"], "r"), N("Gemm", ["r", "V", "b2"], "y", transB=1)]
    return {  # name: (nodes, constants); every case is 4-3-2 but the last, whose scalings sit between two activations
        "transA-alpha-beta": ([N("Transpose", ["x"], "xt"),
                               N("Gemm", ["xt", "Wt", "b"], "h", transA=1, alpha=0.5, beta=2.0), *tail], c),
        "data-as-B": ([N("Transpose", ["x"], "xt"), N("Gemm", ["W", "xt", "bcol"], "ht"),
                       N("Transpose", ["ht"], "h"), *tail], c),
        "data-as-B-transB": ([N("Gemm", ["W", "x", "bcol"], "ht", transB=1), N("Relu", ["ht"], "r"),
                              N("Gemm", ["V", "r"], "yt"), N("Transpose", ["yt"], "y")], c),
        "matmul-add": ([N("MatMul", ["x", "Wt"], "m"), N("Add", ["m", "b"], "h"), *tail], c),
        "matmul-add-constant-first": ([bias_node, N("MatMul", ["x", "Wt"], "m"), N("Add", ["bc", "m"], "h"),
                                       N("Relu", ["h"], "r"), N("MatMul", ["r", "Vt"], "y")], c),
        "matmul-const-first": ([N("Transpose", ["x"], "xt"), N("MatMul", ["W", "xt"], "m"),
                                N("Add", ["m", "bcol"], "ht"), N("Transpose", ["ht"], "h"), *tail], c),
        "scalings-between-layers": ([N("Gemm", ["x", "W", "b"], "h0", transB=1), N("Tanh", ["h0"], "t"),
                                     N("Mul", ["t", "half"], "t1"), N("Sub", ["one", "t1"], "t2"),
                                     N("Neg", ["t2"], "t3"), N("Div", ["t3", "two"], "h"), *tail],
                                    {**c, "half": 0.5, "one": 1.0, "two": np.array([2.0, 4.0, 8.0])}),
    }


@pytest.mark.parametrize("name", list(_affine_cases()))
def test_affine_spellings(name):
    """Gemm with alpha, beta, transA, transB and the data on either side, MatMul + Add in either
    order with a Constant-node bias, Transposes of the batch axis and element-wise constants between
    layers all import to logits equal to onnxruntime's, with one Network layer per weight matrix
    (and one more where scalings sit between two activations)."""
    nodes, inits = _affine_cases()[name]
    model = _affine_model(nodes, inits)
    net = from_onnx(model)
    assert net.architecture == ("4-3-3-2" if name == "scalings-between-layers" else "4-3-2")
    x = np.random.default_rng(0).normal(0, 2, (16, 4)).astype(np.float32)
    np.testing.assert_allclose(net(x), _ort(model, x), rtol=1e-5, atol=1e-5)


def _reshape_model(target, batch):
    nodes = [helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(np.array(target, np.int64))),
             N("Reshape", ["x", "t"], "f"), N("Gemm", ["f", "W", "b"], "h", transB=1), N("Relu", ["h"], "r"),
             N("Gemm", ["r", "V", "c"], "y", transB=1)]
    rng = np.random.default_rng(4)
    inits = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=3), "V": rng.normal(size=(2, 3)), "c": rng.normal(size=2)}
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("target,batch", [([0, -1], "N"), ([-1, 4], "N"), ([1, -1], 1), ([5, 4], 5), ([0, 2, 2], "N")],
                         ids=["0,-1", "-1,4", "1,-1", "batch,d", "0,2,2"])
def test_reshape_targets(target, batch):
    """Reshapes that keep the batch axis first ((N, -1), (-1, d), (1, -1) in a batch-1 model, the static
    batch, a reshape among feature axes) import with onnxruntime's logits and input_shape (2, 2)."""
    if len(target) == 3:  # Gemm then needs 2-D data: flatten after the feature reshape
        model = _reshape_model(target, batch)
        model.graph.node.insert(2, N("Flatten", ["f"], "f2"))
        model.graph.node[3].input[0] = "f2"
    else:
        model = _reshape_model(target, batch)
    net = from_onnx(model)
    assert net.architecture == "4-3-2" and net.input_shape == (2, 2)
    n = batch if isinstance(batch, int) else 6
    x = np.random.default_rng(0).normal(size=(n, 1, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(net(x.reshape(n, -1)), _ort(model, x), rtol=1e-5, atol=1e-5)


def test_reshape_that_merges_the_batch_axis_is_refused():
    """A Reshape to (-1,) or (2, -1) on a symbolic batch mixes samples; it is refused by name."""
    for target in ([-1], [2, -1]):
        with pytest.raises(UnsupportedOperatorError, match="Reshape at node n_f .*batch axis"):
            from_onnx(_reshape_model(target, "N"))


@pytest.mark.parametrize("conv", [dict(in_channels=1, out_channels=2, kernel_size=3, stride=2, padding=1),
                                  dict(in_channels=2, out_channels=4, kernel_size=2, dilation=2, groups=2),
                                  dict(in_channels=2, out_channels=3, kernel_size=(2, 3), padding="same")],
                         ids=["stride-pad", "dilation-groups", "same"])
def test_conv_lowering(conv):
    """Conv2d lowered to a dense affine map computes torch's convolution (from_torch, to 1e-10) and
    onnxruntime's (from_onnx of the exported graph, to 1e-5)."""
    torch.manual_seed(1)
    c_in = conv["in_channels"]
    module = nn.Sequential(nn.Conv2d(**conv), nn.Tanh(), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(8, c_in, 7, 7)
    module(x)  # materialise the lazy layer
    module[3] = nn.Linear(module[3].in_features, 5)
    net = from_torch(module, input_shape=(c_in, 7, 7))
    with torch.no_grad():
        y = module.double()(x.double()).numpy()
    np.testing.assert_allclose(net(x.double().numpy().reshape(8, -1)), y, rtol=0, atol=1e-10)
    f = io.BytesIO()
    torch.onnx.export(module.float(), (x,), f, dynamo=False, input_names=["input"], dynamic_axes={"input": {0: "b"}})
    model = onnx.load_from_string(f.getvalue())
    np.testing.assert_allclose(from_onnx(model)(x.numpy().reshape(8, -1)), _ort(model, x.numpy()), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# from_torch specifics.


def test_from_torch_fuses_appends_and_drops_softmax():
    """Linear after Linear fuses into one layer (W2 @ W1); a network ending in an activation gets an
    identity layer appended; a final Softmax / LogSoftmax is dropped, the logits before it kept
    and the predicted class unchanged."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 6), nn.Tanh(),
                      nn.Softmax(dim=1)).eval()
    net = from_torch(m)
    assert net.architecture == "4-3-6-6"
    W1, W2 = (m[i].weight.detach().double().numpy() for i in (0, 2))
    np.testing.assert_array_equal(net.layers[0].W, W2 @ W1)
    np.testing.assert_array_equal(net.layers[-1].W, np.eye(6))
    x = torch.randn(50, 4, dtype=torch.float64)
    with torch.no_grad():
        probs = m.double()(x).numpy()
        logits = m[:-1](x).numpy()
    np.testing.assert_allclose(net(x.numpy()), logits, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(net.predict(x.numpy()), probs.argmax(1))
    log = from_torch(nn.Sequential(nn.Linear(4, 2), nn.LogSoftmax(dim=-1)))
    assert log.architecture == "4-2" and log.n_hidden_layers == 0


def test_from_torch_identity_rule_nesting_and_dropout_in_train_mode():
    """nn.Identity between two Linears is an identity layer boundary, elsewhere a no-op; nested
    Sequentials and a module whose children form a sequence are flattened; a module in train mode
    is read with eval semantics (Dropout is the identity) and left in train mode."""
    a = from_torch(nn.Sequential(nn.Identity(), nn.Linear(4, 3), nn.Identity(), nn.ReLU(), nn.Identity(),
                                 nn.Linear(3, 2), nn.Identity()))
    assert a.architecture == "4-3-2" and a.activations == (Activation(ActKind.RELU),)
    b = from_torch(nn.Sequential(nn.Linear(4, 3), nn.Identity(), nn.Linear(3, 2)))
    assert b.activations == (Activation(ActKind.IDENTITY),)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.drop = nn.Linear(4, 3), nn.SiLU(), nn.Dropout(0.9)

        def forward(self, x):
            return self.drop(self.act(self.fc(x)))

    m = nn.Sequential(OrderedDict(body=nn.Sequential(Block()), head=nn.Linear(3, 2))).train()
    net = from_torch(m)
    assert net.architecture == "4-3-2" and net.activations == (Activation(ActKind.SILU),)
    assert m.training and m.body[0].drop.training


def test_from_torch_refuses_what_it_cannot_read():
    """Every unsupported module is listed in one error with its path; a forward that is not its
    children in order (functional relu) is caught by the verification; Conv2d needs input_shape."""
    m = nn.Sequential(OrderedDict([("features", nn.Sequential(nn.Conv3d(1, 1, 1))), ("1", nn.Flatten()),
                                   ("2", nn.Linear(4, 4)), ("3", nn.Softmax(dim=1)), ("4", nn.Linear(4, 2))]))
    with pytest.raises(UnsupportedOperatorError) as e:
        from_torch(m)
    msg = str(e.value)
    assert msg.startswith("2 unsupported modules: Conv3d at features.0, Softmax at 3") and "supported: " in msg
    assert "Linear" in msg.split("supported: ")[1]

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    with pytest.raises(ModelError, match="does not compute its children in order"):
        from_torch(Functional())
    with pytest.raises(ParameterError, match="input_shape"):
        from_torch(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(25, 2)))
    with pytest.raises(UnsupportedOperatorError, match="MaxPool2d at 1"):
        from_torch(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2)), (1, 7, 7))


# ---------------------------------------------------------------------------------------------
# ONNX errors.


def _legacy(module, x):
    f = io.BytesIO()
    torch.onnx.export(module.eval(), (x,), f, dynamo=False, input_names=["input"])
    return onnx.load_from_string(f.getvalue())


def test_onnx_unsupported_operators_are_named_with_their_nodes():
    """A Softmax in the middle and a MaxPool are both named, with their node names, in one error that
    lists what is supported; a 3-D Conv is named and said not to be lowered; a residual branch is refused."""
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 4), nn.Softmax(dim=1),
                      nn.Linear(4, 2))
    model = _legacy(m, torch.randn(1, 1, 7, 7))
    names = {n.op_type: n.name for n in model.graph.node}
    with pytest.raises(UnsupportedOperatorError) as e:
        from_onnx(model)
    msg = str(e.value)
    assert msg.startswith("2 unsupported operators:")
    assert f"MaxPool at node {names['MaxPool']}" in msg and f"Softmax at node {names['Softmax']}" in msg
    assert "Gemm" in msg.split("supported: ")[1]

    model = _legacy(nn.Sequential(nn.Conv3d(1, 1, 2), nn.Flatten(), nn.Linear(8, 2)), torch.randn(1, 1, 3, 3, 3))
    conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    with pytest.raises(UnsupportedOperatorError, match=f"Conv at node {conv} .*3-D convolution"):
        from_onnx(model)

    residual = _graph([N("Relu", ["h"], "r"), N("Gemm", ["r", "W3"], "g", transB=1), N("Add", ["g", "h"], "a")],
                      {"W3": np.eye(3)})
    with pytest.raises(UnsupportedOperatorError, match="residual"):
        from_onnx(residual)


def test_onnx_malformed_and_missing_files(tmp_path):
    """Garbage bytes, a missing file, a directory and a graph failing the checker are ModelErrors
    (hence PolylensErrors) with one-line messages."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not an onnx model\xff\xfe")
    cases = [b"\x00\x01garbage\xff" * 10, bad, tmp_path / "missing.onnx", tmp_path,
             helper.make_model(helper.make_graph([], "empty", [], []))]
    for case in cases:
        with pytest.raises(ModelError) as e:
            from_onnx(case)
        assert isinstance(e.value, PolylensError) and "\n" not in str(e.value)
    with pytest.raises(ParameterError):
        from_onnx(12)
    assert issubclass(UnsupportedOperatorError, PolylensError)


def test_export_parameters_are_checked():
    """to_onnx and to_torch validate their parameters with the one message template."""
    net = _net((4, 3, 2), Activation(ActKind.RELU))
    with pytest.raises(ParameterError, match="The 'opset' parameter of to_onnx"):
        to_onnx(net, opset=7)
    with pytest.raises(ParameterError, match="The 'dtype' parameter of to_onnx"):
        to_onnx(net, dtype="int8")
    with pytest.raises(ParameterError, match="The 'dtype' parameter of to_torch"):
        to_torch(net, dtype=torch.int32)
