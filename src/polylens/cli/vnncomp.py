"""``polylens vnncomp``: VNN-COMP instances, in the competition's two forms.

- ``polylens vnncomp ONNX VNNLIB --timeout S --result FILE``: one instance; FILE gets ``sat`` (with
  the counterexample), ``unsat``, ``timeout`` or ``unknown``; exit status 0 whatever the verdict.
- ``polylens vnncomp --instances CSV --root DIR --out DIR2``: every row of an instances CSV, one result
  file each in DIR2 and ``summary.csv`` there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polylens.cli import app
from polylens.cli._common import JSON_HELP, err_console, out_console, print_json
from polylens.errors import ParameterError


@app.command()
def vnncomp(
    onnx: Optional[Path] = typer.Argument(None, metavar="[ONNX]", help="The network (.onnx, may be gzipped)."),
    vnnlib: Optional[Path] = typer.Argument(None, metavar="[VNNLIB]", help="The property (VNN-LIB 1.0, may be gzipped)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds for the instance (one-instance form)."),
    result: Optional[Path] = typer.Option(None, "--result", help="The result file to write (one-instance form)."),
    instances: Optional[Path] = typer.Option(None, "--instances", help="A competition instances CSV: onnx,vnnlib,timeout."),
    root: Optional[Path] = typer.Option(None, "--root", help="The folder the CSV's paths are relative to "
                                        "(default: the CSV's folder)."),
    out: Optional[Path] = typer.Option(None, "--out", help="The folder for the result files and summary.csv."),
    timeout_scale: float = typer.Option(1.0, "--timeout-scale", help="Multiply every CSV timeout by this."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Run only the first N rows of the CSV."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Decide VNN-COMP instances (ONNX + VNN-LIB) by attack and branch and bound, writing the competition's result files."""
    from polylens.lenses.verify.vnncomp import run_instance, run_instances, write_result

    if instances is not None:
        if onnx is not None or vnnlib is not None or result is not None:
            raise ParameterError("Give either ONNX VNNLIB --result FILE or --instances CSV --out DIR. Got both forms instead.")
        if out is None:
            raise ParameterError("The '--out' option is needed with --instances (the folder for the result files).")
        if not timeout_scale > 0:
            raise ParameterError(f"The '--timeout-scale' option must be positive. Got {timeout_scale!r} instead.")
        if limit is not None and limit < 1:
            raise ParameterError(f"The '--limit' option must be at least 1. Got {limit!r} instead.")
        con = err_console()

        def progress(k, n, r):
            con.print(f"[{k}/{n}] {r.onnx} {r.vnnlib}: {r.result} in {r.seconds:.1f} s")

        rs = run_instances(instances, root if root is not None else instances.parent, out,
                           timeout_scale=timeout_scale, limit=limit, progress=progress)
        counts = {k: sum(r.result == k for r in rs) for k in ("unsat", "sat", "timeout", "unknown")}
        if json_out:
            print_json({"instances": [r.to_dict() for r in rs], "counts": counts, "out": str(out)})
            return
        from rich.table import Table

        t = Table(title=f"{len(rs)} instances: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for c in ("onnx", "vnnlib", "result", "seconds", "nodes"):
            t.add_column(c)
        for r in rs:
            t.add_row(r.onnx, r.vnnlib, r.result, f"{r.seconds:.1f}", str(r.nodes))
        out_console().print(t)
        return
    if onnx is None or vnnlib is None or result is None:
        raise ParameterError("polylens vnncomp needs ONNX VNNLIB --timeout S --result FILE, or --instances CSV --out DIR.")
    if not timeout > 0:
        raise ParameterError(f"The '--timeout' option must be positive. Got {timeout!r} instead.")
    r = run_instance(onnx, vnnlib, timeout)
    write_result(result, r)
    if json_out:
        print_json({**r.to_dict(), "result_file": str(result)})
    else:
        out_console().print(f"{r.result} ({r.seconds:.1f} s, {r.nodes} nodes) -> {result}")
