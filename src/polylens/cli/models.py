"""Commands about models: ``train``, ``info``, ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from polylens.cli import app
from polylens.cli._common import (
    JSON_HELP, MODEL_HELP, accuracy_table, err_console, jsonable, load_inputs, load_model_arg, out_console,
    parse_int_list, percent, print_json, softmax,
)
from polylens.errors import DataError, ModelError, ParameterError
from polylens.nn.train import DEFAULTS

BUNDLED_SOURCE = "bundled"


# ---------------------------------------------------------------------------------------------
# train


@app.command()
def train(
    architecture: str = typer.Argument(..., metavar="ARCH", help="Layer widths joined by dashes, e.g. 49-3-3-10."),
    act: str = typer.Option("gelu", "--act", help="Activation of every hidden layer: relu, gelu, gelu_tanh, "
                            "sigmoid, tanh, silu, leaky_relu(0.01), identity."),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="Seed of initialisation and minibatch shuffling."),
    epochs: int = typer.Option(DEFAULTS.epochs, "--epochs", help="Passes over the training set."),
    lr: float = typer.Option(DEFAULTS.lr, "--lr", help="Adam learning rate."),
    batch_size: int = typer.Option(DEFAULTS.batch_size, "--batch-size", help="Minibatch size."),
    weight_decay: float = typer.Option(DEFAULTS.weight_decay, "--weight-decay", help="Adam L2 penalty."),
    data: str = typer.Option(BUNDLED_SOURCE, "--data", help="'bundled' (10,000 MNIST digits shipped with "
                             "polylens) or a directory of IDX files."),
    factor: int = typer.Option(4, "--factor", help="Downsample factor: 28x28 images become 28/f x 28/f."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the train/test split of the bundled data."),
    out: Path = typer.Option(..., "--out", help="Directory to write model.safetensors and card.json to."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train an MLP classifier (Adam, cross-entropy, deterministic) and save it as a model directory."""
    from polylens.data import load_split
    from polylens.nn.model import BUNDLED_DATASET, save_model
    from polylens.nn.train import EpochReport, train_command, train_mlp

    if data == BUNDLED_SOURCE:
        dataset = BUNDLED_DATASET
    else:
        d = Path(data).expanduser()
        if not d.is_dir():
            raise DataError(f"The '--data' option must be 'bundled' or a directory of IDX files. Got {data!r} instead.")
        dataset = str(d.resolve())
    split = load_split(source=data if data == BUNDLED_SOURCE else dataset, factor=factor, seed=split_seed)
    command = train_command(architecture, act, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                            weight_decay=weight_decay, data=data if data == BUNDLED_SOURCE else dataset,
                            factor=factor, split_seed=split_seed, out=str(out))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = err_console()
    progress = Progress(TextColumn("training {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("epochs  loss {task.fields[loss]}"), TimeElapsedColumn(),
                        console=console, disable=not console.is_terminal, transient=True)
    with progress:
        task = progress.add_task(architecture, total=epochs, loss="-")

        def report(r: EpochReport) -> None:
            progress.update(task, completed=r.epoch, loss=f"{r.loss:.4f}")

        model = train_mlp(architecture, act, split, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                          weight_decay=weight_decay, progress=report, dataset=dataset, command=command)
    save_model(model, out)

    card = model.card
    if json_out:
        print_json({"out": str(out), "n_params": model.network.n_params, **card.to_dict()})
        return
    con = out_console()
    con.print(f"Saved [bold]{card.architecture}[/] {card.activation} model to [bold]{out}[/] "
              f"({model.network.n_params} parameters, {card.training['seconds']} s, "
              f"final training loss {card.training['final_train_loss']:.4f}).")
    con.print(f"Test accuracy {percent(card.test_accuracy)} on {card.split['n_test']} test images "
              f"(training accuracy {percent(card.training['train_accuracy'])}).")
    counts = np.bincount(split.y_test, minlength=model.network.n_classes)
    con.print(accuracy_table(card.per_class_accuracy or [], counts, title="Test accuracy per class"))


# ---------------------------------------------------------------------------------------------
# info


def _evaluation(model) -> dict:
    """Test accuracy of the model on the split its card names; 'not evaluated' with the reason
    when the card names no loadable data."""
    from polylens.nn.model import evaluate, model_split

    try:
        split = model_split(model)
    except (ModelError, DataError) as e:
        return {"test_accuracy": None, "per_class_accuracy": None, "test_counts": None,
                "evaluation": f"not evaluated: {e}"}
    acc, per_class = evaluate(model.network, split.x_test, split.y_test, model.network.n_classes)
    counts = np.bincount(split.y_test, minlength=model.network.n_classes)
    return {"test_accuracy": acc, "per_class_accuracy": per_class, "test_counts": counts.tolist(),
            "evaluation": f"{len(split.y_test)} test images of {split.name} (split seed {split.seed}, "
                          f"downsample factor {split.factor})"}


@app.command()
def info(
    model_spec: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Describe a model and measure its test accuracy, overall and per class."""
    model = load_model_arg(model_spec)
    net, card = model.network, model.card
    result = {
        "source": model.source,
        "architecture": net.architecture,
        "activation": card.activation,
        "input_shape": list(net.input_shape),
        "hidden_widths": list(net.hidden_widths),
        "n_classes": net.n_classes,
        "n_params": net.n_params,
        "dataset": card.dataset,
        "preprocessing": card.preprocessing,
        "split": card.split,
        "seed": card.seed,
        **_evaluation(model),
        "card_test_accuracy": card.test_accuracy,
        "neuron_names": card.neuron_names,
        "training": card.training,
        "command": card.command,
        "polylens_version": card.polylens_version,
        "created": card.created,
    }
    if json_out:
        print_json(result)
        return
    from rich.table import Table

    con = out_console()
    t = Table(title=f"Model {model.source}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("architecture", f"{net.architecture} ({card.activation})")
    t.add_row("parameters", str(net.n_params))
    t.add_row("input shape", "x".join(map(str, net.input_shape)))
    t.add_row("dataset", f"{card.dataset} {jsonable(card.preprocessing)}")
    t.add_row("split", str(jsonable(card.split)))
    if card.seed is not None:
        t.add_row("training seed", str(card.seed))
    t.add_row("test accuracy", f"{percent(result['test_accuracy'])}  ({result['evaluation']})")
    if card.command:
        t.add_row("made by", card.command)
    if card.neuron_names:
        t.add_row("neuron names", ", ".join(f"{k}={v}" for k, v in sorted(card.neuron_names.items())))
    con.print(t)
    if result["per_class_accuracy"] is not None:
        con.print(accuracy_table(result["per_class_accuracy"], result["test_counts"], title="Test accuracy per class"))


# ---------------------------------------------------------------------------------------------
# predict


@app.command()
def predict(
    model_spec: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    index: Optional[str] = typer.Option(None, "--index", help="Positions in the model's test split, e.g. 0,1,2."),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help="A .npy array of shape (N, d) or (d,)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Logits, probabilities and predicted classes for test images or for inputs from a .npy file."""
    if (index is None) == (inputs is None):
        raise ParameterError("predict needs exactly one of --index (positions in the test split) or --inputs X.npy.")
    model = load_model_arg(model_spec)
    net = model.network
    result: dict = {}
    if index is not None:
        from polylens.nn.model import model_split

        split = model_split(model)
        idx = parse_int_list(index, "index", lo=0, hi=len(split.y_test) - 1)
        x = split.x_test[idx]
        result["index"] = idx
        result["labels"] = split.y_test[idx].tolist()
    else:
        x = load_inputs(inputs, net.input_dim)
    logits = net(x)
    probs = softmax(logits)
    preds = np.argmax(logits, axis=1)
    out = {"logits": logits, "probabilities": probs, "predictions": preds, **result}
    if json_out:
        print_json(out)
        return
    from rich.table import Table

    t = Table(title=f"Predictions of {model.source}")
    t.add_column("#", justify="right")
    if index is not None:
        t.add_column("test index", justify="right")
        t.add_column("label", justify="right")
    t.add_column("predicted", justify="right")
    t.add_column("probability", justify="right")
    t.add_column("logits")
    for r in range(len(x)):
        row = [str(r)]
        if index is not None:
            row += [str(result["index"][r]), str(result["labels"][r])]
        row += [str(preds[r]), f"{probs[r, preds[r]]:.3f}", " ".join(f"{v:+.2f}" for v in logits[r])]
        t.add_row(*row)
    out_console().print(t)
