"""The command line: JSON contracts of info/predict/train/demo, and one-line errors with exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polylens.nn.model import CARD_FILE, load_model, model_split

from conftest import run_cli


def run_json(*args: str) -> dict:
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)  # the whole of stdout is one JSON document


@pytest.fixture(scope="module")
def seed():
    return load_model("seed")


def test_info_json_contract(seed):
    """`info seed --json` prints one JSON object with the architecture, activation, a test accuracy in
    (0, 1] measured now on the test split (equal to the card's) and 10 per-class accuracies."""
    info = run_json("info", "seed")
    assert info["architecture"] == "49-3-3-10" and info["activation"] == "gelu"
    assert isinstance(info["test_accuracy"], float) and 0 < info["test_accuracy"] <= 1
    assert info["test_accuracy"] == seed.card.test_accuracy
    pc = info["per_class_accuracy"]
    assert len(pc) == 10 and all(isinstance(v, float) and 0 <= v <= 1 for v in pc)
    assert sum(info["test_counts"]) == 2000 and info["n_params"] == 202


def test_info_table_mentions_the_figures():
    """Without --json, info prints a readable summary with the accuracy."""
    code, out, err = run_cli("info", "seed")
    assert code == 0 and err == ""
    assert "49-3-3-10" in out and "76.8%" in out


@pytest.mark.parametrize("shape", [(5, 49), (49,)])
def test_predict_inputs_contract_matches_network(tmp_path, seed, shape):
    """`predict seed --inputs X.npy --json` returns exactly the Network's float64 logits, softmax
    probabilities that sum to one, and argmax predictions, for (N, d) and (d,) arrays."""
    x = np.random.default_rng(0).random(shape)
    np.save(tmp_path / "x.npy", x)
    res = run_json("predict", "seed", "--inputs", tmp_path / "x.npy")
    logits = np.array(res["logits"])
    assert np.array_equal(logits, seed.network(x))  # JSON floats round-trip exactly
    probs = np.array(res["probabilities"])
    assert probs.shape == logits.shape and np.allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert res["predictions"] == seed.network.predict(x).tolist() == np.argmax(probs, axis=1).tolist()


def test_predict_index_shows_true_labels(seed):
    """`predict --index` reads the model's test split and reports the true labels."""
    res = run_json("predict", "seed", "--index", "0,5,1999")
    split = model_split(seed)
    assert res["index"] == [0, 5, 1999]
    assert res["labels"] == split.y_test[[0, 5, 1999]].tolist()
    assert res["predictions"] == seed.network.predict(split.x_test[[0, 5, 1999]]).tolist()


def test_train_command_writes_a_loadable_model(tmp_path):
    """`train` writes a model directory whose card records the command, and `info` reads it back."""
    res = run_json("train", "49-3-3-10", "--epochs", "2", "--seed", "1", "--out", tmp_path / "m")
    assert res["architecture"] == "49-3-3-10" and 0 < res["test_accuracy"] <= 1
    m = load_model(tmp_path / "m")
    assert "--epochs 2" in m.card.command and "--seed 1" in m.card.command
    assert run_json("info", tmp_path / "m")["test_accuracy"] == res["test_accuracy"]


def _malformed_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    (d / CARD_FILE).write_text('{"architecture": ')
    return d


def _unsupported_onnx(tmp_path: Path) -> Path:
    """An ONNX MLP with a MaxPool in its middle: an operator polylens cannot represent."""
    import onnx
    from onnx import TensorProto, helper

    W = helper.make_tensor("W", TensorProto.FLOAT, [49, 10], [0.01] * 490)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["img"]),
             helper.make_node("MaxPool", ["img"], ["pooled"], kernel_shape=[1, 1]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["y"])]
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 7, 7])
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 49])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])], [W, shape])
    path = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _wide_inputs(tmp_path: Path) -> Path:
    np.save(tmp_path / "wide.npy", np.zeros((3, 50)))
    return tmp_path / "wide.npy"


ERROR_CASES = {
    "missing model path": (lambda t: ["info", t / "no" / "such"], "does not exist"),
    "malformed model dir": (lambda t: ["info", _malformed_dir(t)], "not valid JSON"),
    "wrong input width": (lambda t: ["predict", "seed", "--inputs", _wide_inputs(t)], "(N, 49)"),
    "bad option value": (lambda t: ["train", "49-3-3-10", "--epochs", "-3", "--out", t / "m"], "'epochs'"),
    "non-integer option": (lambda t: ["train", "49-3-3-10", "--epochs", "x", "--out", t / "m"], "--epochs"),
    "unknown bundled name": (lambda t: ["info", "nonesuch"], "bundled models: "),
    "unknown option": (lambda t: ["info", "seed", "--colour"], "No such option"),
    "unknown command": (lambda t: ["frobnicate"], "frobnicate"),
    "missing argument": (lambda t: ["info"], "MODEL"),
    "index out of range": (lambda t: ["predict", "seed", "--index", "2000"], "[0, 1999]"),
    "neither index nor inputs": (lambda t: ["predict", "seed"], "exactly one"),
    "missing inputs file": (lambda t: ["predict", "seed", "--inputs", t / "none.npy"], "none.npy"),
    "unsupported operator": (lambda t: ["verify", _unsupported_onnx(t), "--n", "3"], "MaxPool"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_one_line_and_exit_2(tmp_path, case):
    """Each error a user can cause prints exactly one line `polylens: error: ...` on stderr,
    nothing on stdout, and exits with status 2."""
    make_args, needle = ERROR_CASES[case]
    code, out, err = run_cli(*make_args(tmp_path))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("polylens: error: ") and needle in lines[0]
    assert "Traceback" not in err


def test_help_and_version_exit_0():
    """--help and --version succeed with status 0."""
    code, out, _ = run_cli("--help")
    assert code == 0 and "train" in out and "predict" in out
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("polylens ")


def _entry_point() -> list[str]:
    script = Path(sys.executable).parent / "polylens"
    if script.exists():
        return [str(script)]
    found = shutil.which("polylens")
    return [found] if found else [sys.executable, "-c", "import sys; from polylens.cli import main; sys.exit(main())"]


@pytest.mark.parametrize("args", [["info", "/no/such/model"], ["info", "seed", "--epochs", "-3"]])
def test_installed_command_exit_code(args):
    """Through the installed `polylens` entry point in a fresh process: exit status 2, one line on
    stderr, no traceback."""
    proc = subprocess.run(_entry_point() + args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("polylens: error: ")


def test_installed_command_info_json():
    """The installed entry point prints the info JSON contract in a fresh process."""
    proc = subprocess.run(_entry_point() + ["info", "seed", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["architecture"] == "49-3-3-10"


def test_number_list_parsing():
    """Comma lists parse to numbers; empty items, non-numbers, NaN and out-of-range values are
    ParameterErrors naming the option."""
    from polylens.cli._common import parse_float_list, parse_int_list
    from polylens.errors import ParameterError

    assert parse_float_list("0,0.01, 0.02", "eps", lo=0, hi=1) == [0.0, 0.01, 0.02]
    assert parse_int_list("3,1,2", "index", lo=0) == [3, 1, 2]
    for bad in ("", "0,,1", "a", "nan", "1.5"):
        with pytest.raises(ParameterError, match="'eps'"):
            parse_float_list(bad, "eps", lo=0, hi=1)
    for bad in ("1.5", "-1", "x"):
        with pytest.raises(ParameterError, match="'index'"):
            parse_int_list(bad, "index", lo=0)


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_predict_on_an_onnx_file_made_elsewhere_agrees_with_onnxruntime(tmp_path, act):
    """`polylens predict model.onnx --inputs X.npy --json` on a torch model exported with torch.onnx.export
    gives the logits onnxruntime computes from the same file, to 1e-5; `info` on it reports its width."""
    import onnxruntime as ort
    import torch

    torch.manual_seed(1)
    A = torch.nn.GELU if act == "gelu" else torch.nn.ReLU
    mod = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 12), A(), torch.nn.Linear(12, 8), A(),
                              torch.nn.Linear(8, 10)).eval()
    path = tmp_path / f"net_{act}.onnx"
    torch.onnx.export(mod, torch.zeros(1, 1, 7, 7), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}}, dynamo=False)
    x = np.random.default_rng(0).random((6, 49))
    np.save(tmp_path / "x.npy", x)
    got = run_json("predict", path, "--inputs", tmp_path / "x.npy")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"image": x.reshape(6, 1, 7, 7).astype(np.float32)})[0]
    np.testing.assert_allclose(np.array(got["logits"]), want, atol=1e-5, rtol=0)
    assert got["predictions"] == want.argmax(axis=1).tolist()
    assert run_json("info", path)["architecture"] == "49-12-8-10"
