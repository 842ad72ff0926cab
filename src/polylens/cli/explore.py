"""The explorer commands: ``serve`` (the live web app) and ``export-site`` (the same page, static)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import List, Optional

import typer

from polylens.cli import app
from polylens.cli._common import JSON_HELP, MODEL_HELP, err_console, load_model_arg, parse_float_list, print_json
from polylens.errors import ParameterError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


SET_HELP = ("A lens option in the explorer, e.g. --set robustness.images=0 (no background sweep) or --set "
            "signatures.per_digit=10 (repeatable).")


def _config(eps: float, time_limit: float, settings: List[str], max_nodes: int):
    from polylens.cli.lenses import parse_settings
    from polylens.explorer.api import ExplorerConfig
    from polylens.lenses import get_lens

    lenses = {}
    for name, values in parse_settings(settings).items():
        lens = get_lens(name)
        labels = {k: f"{lens.name}.{k}" for k in values}
        lens.options.from_text(values, labels)  # each value checked, the error naming it as given
        lenses[lens.name] = values
    return ExplorerConfig(eps=eps, time_limit=time_limit, max_nodes=max_nodes, lenses=lenses)


@app.command()
def serve(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    port: int = typer.Option(8765, "--port", help="TCP port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. The server has no authentication: "
                             "keep the default loopback address unless you know who can reach the machine."),
    names_dir: Optional[Path] = typer.Option(None, "--names-dir", help="Where to keep neuron names of a bundled or "
                                             "ONNX model (a copy of its card). A model directory keeps them in its own "
                                             "card.json. Without it, such names live in memory only."),
    eps: float = typer.Option(0.01, "--eps", help="Starting radius of the eps slider."),
    time_limit: float = typer.Option(1.0, "--time-limit", help="Seconds per LP solve of a live check."),
    settings: List[str] = typer.Option([], "--set", help=SET_HELP),
    max_nodes: int = typer.Option(16, "--max-nodes", help="Neurons drawn per hidden layer (the rest fold into "
                                  "one '+N more' node)."),
) -> None:
    """Serve the interactive explorer of MODEL at http://127.0.0.1:PORT/ (Ctrl-C stops it)."""
    import uvicorn

    from polylens.explorer.server import create_app

    if not 0 <= port <= 65535:
        raise ParameterError(f"The '--port' option must be an int in [0, 65535]. Got {port} instead.")
    m = load_model_arg(model)
    cfg = _config(eps, time_limit, settings, max_nodes)
    application = create_app(m, config=cfg, names_dir=names_dir)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ParameterError(f"Cannot listen on {host}:{port}: {e.strerror or e}. Choose another --port "
                             "(0 picks a free one).") from None
    sock.listen(128)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{actual}/"
    notes = err_console()
    if host not in LOOPBACK:
        notes.print(f"[yellow]warning:[/] serving on {host}: anyone who can reach it can use the explorer "
                    "(and rename neurons). There is no authentication.")
    notes.print(f"{m.network.describe()} from {m.source}; "
                f"{application.state.explorer.names.note}")
    sys.stdout.write(f"polylens explorer at {url}\n")
    sys.stdout.flush()
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        application.state.explorer.close()


@app.command("export-site")
def export_site_command(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    out: Path = typer.Argument(..., metavar="OUT", help="Directory to write the site into (index.html and what "
                               "it needs)."),
    samples: int = typer.Option(60, "--samples", help="Test samples to precompute (balanced over classes)."),
    eps_grid: str = typer.Option("0,0.005,0.01,0.02,0.03,0.05,0.1", "--eps-grid",
                                 help="Radii precomputed for each sample (the slider moves over these)."),
    settings: List[str] = typer.Option([], "--set", help=SET_HELP),
    max_nodes: int = typer.Option(16, "--max-nodes", help="Neurons drawn per hidden layer."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write the explorer of MODEL as a static site in OUT/ (serve it with any static server, e.g.
    python -m http.server --directory OUT; it also opens from disk)."""
    from polylens.explorer.export import export_site_report

    grid = parse_float_list(eps_grid, "--eps-grid", 0.0, 1.0)
    if samples < 0:
        raise ParameterError(f"The '--samples' option must be an int in [0, inf). Got {samples} instead.")
    m = load_model_arg(model)
    cfg = _config(min(grid, key=lambda e: abs(e - 0.01)), 1.0, settings, max_nodes)
    con = err_console()
    with con.status("exporting") as status:
        res = export_site_report(m, out, n_samples=samples, eps_grid=grid, config=cfg,
                                 progress=lambda msg: status.update(msg))
    if json_out:
        print_json(dict(res))
        return
    sys.stdout.write(f"wrote {res['index']} ({res['files']} files, {res['bytes'] / 1e6:.1f} MB, "
                     f"{res['n_samples']} samples, {res['seconds']:.1f} s)\n"
                     f"serve it: python -m http.server --directory {out}  (or open index.html from disk)\n")
