"""Standard output belongs to polylens: every command with --json prints exactly one JSON document
there, in a real subprocess, whatever the libraries beneath it print (the guard against the next
dependency that starts printing a banner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import typer

from polylens.cli import app

#: A quick invocation of every command that has --json (``{out}`` is a fresh directory); the lens
#: commands are made from the registry below. A new command with --json that is not a lens must be
#: added here: test_every_json_command_is_covered fails until it is.
INVOCATIONS: dict[str, list[str]] = {
    "train": ["train", "49-3-10", "--epochs", "1", "--out", "{out}/model"],
    "info": ["info", "seed"],
    "predict": ["predict", "seed", "--index", "0,1"],
    "verify": ["verify", "seed", "--eps", "0,0.02", "--n", "12", "--workers", "2"],
    "report": ["report", "seed", "--n", "12", "--workers", "2", "--out", "{out}/report", "--only",
               "robustness,prototypes,findings"],
    "export-site": ["export-site", "seed", "{out}/site", "--samples", "4", "--set", "robustness.images=4",
                    "--set", "signatures.per_digit=2", "--set", "findings.images=20", "--set", "findings.per_digit=2",
                    "--set", "counterfactuals.tighten=0", "--set", "prototypes.strip=0.1", "--eps-grid", "0,0.01"],
    "construct": ["construct", "{out}/toy.npz", "--out", "{out}/constructed"],
}


def _toy_npz(out) -> None:
    """A tiny labelled set for `construct`: two separable blobs in the plane."""
    import numpy as np

    x = np.array([[0.1, 0.2], [0.15, 0.1], [0.2, 0.25], [0.8, 0.7], [0.9, 0.85], [0.75, 0.9]])
    np.savez(out / "toy.npz", x=x, y=np.array([0, 0, 0, 1, 1, 1]))


#: Files an invocation reads, made in its fresh directory before it runs.
FIXTURES = {"construct": _toy_npz}


def _lens_invocations() -> dict[str, list[str]]:
    """Every lens command, run quickly: the lens's quick options on the first 60 test images."""
    from polylens.lenses import all_lenses
    from polylens.lenses.base import option_specs

    out = {}
    for lens in all_lenses():
        specs = {s.name: s for s in option_specs(lens.options)}
        args = [lens.cli_name, "seed"] + (["--n", "60"] if lens.needs_data else [])
        for k, v in lens.quick.items():
            spec = specs[k]
            if not spec.cli:
                continue
            if spec.kind == "bool":
                args.append(spec.flag if v else "--no-" + spec.flag[2:])
            else:
                text = ",".join(f"{e:g}" if isinstance(e, float) else str(e) for e in v) if isinstance(v, tuple) else str(v)
                args += [spec.flag, text]
        out[lens.cli_name] = args
    return out


#: Commands whose --json run in a fresh process is checked by another test (a demo costs a minute;
#: that test runs one anyway), with where.
COVERED_ELSEWHERE = {"demo": "tests/test_demo.py::test_demo_command_reuses_the_sweep",
                     "vnncomp": "tests/test_complete_vnncomp.py::test_vnncomp_json_is_one_document"}

for _name, _args in _lens_invocations().items():
    INVOCATIONS.setdefault(_name, _args)  # an explicit invocation above (verify with 2 workers) wins


def json_commands() -> set[str]:
    """Every command of the CLI that takes --json."""
    group = typer.main.get_command(app)
    return {name for name, cmd in group.commands.items()
            if any("--json" in p.opts for p in cmd.params)}


def run_polylens(args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    """``polylens ARGS`` in a fresh Python process (``prelude``: code run first, e.g. to inject a
    banner), stdout and stderr captured separately."""
    code = textwrap.dedent(prelude) + "\nimport sys\nfrom polylens.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, env=env)


def one_json_document(text: str) -> object:
    """The single JSON document that ``text`` is; AssertionError naming what else is there."""
    try:
        doc, end = json.JSONDecoder().raw_decode(text.lstrip())
    except json.JSONDecodeError as e:
        raise AssertionError(f"stdout is not one JSON document ({e}); it starts {text[:200]!r}") from None
    rest = text.lstrip()[end:]
    assert rest.strip() == "", f"stdout has more after its JSON document: {rest[:200]!r}"
    return doc


def test_every_json_command_is_covered():
    """The table of invocations names exactly the commands that take --json (none is left out)."""
    assert json_commands() == set(INVOCATIONS) | set(COVERED_ELSEWHERE)
    assert not set(INVOCATIONS) & set(COVERED_ELSEWHERE)


@pytest.mark.parametrize("name", sorted(INVOCATIONS))
def test_json_output_is_one_document(name, tmp_path):
    """`polylens NAME ... --json` exits 0 and its whole stdout parses as one JSON document."""
    args = [a.format(out=tmp_path) for a in INVOCATIONS[name]] + ["--json"]
    if name in FIXTURES:
        FIXTURES[name](tmp_path)
    proc = run_polylens(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert isinstance(one_json_document(proc.stdout), dict)


# A C-level banner on file descriptor 1 each time a process creates its first solver, the way
# HiGHS 1.16 does (printed with libc's puts, so it sits in C's stdio buffer on a pipe). Injected
# into the one solver adapter, it also fires in every worker process of a sweep.
BANNER_PRELUDE = """
import ctypes, os
import polylens.lp.highs as _h
_real = _h.highspy.Highs
_seen = set()
def _noisy():
    if os.getpid() not in _seen:
        _seen.add(os.getpid())
        ctypes.CDLL(None).puts(b"Running FakeSolver 9.9 (banner): Copyright nobody")
    return _real()
_h.highspy.Highs = _noisy
"""

# The same, with polylens' own guards switched off: what a user saw before they existed.
UNGUARDED_PRELUDE = BANNER_PRELUDE + """
import contextlib
import polylens.stdio
polylens.stdio.reserved_stdout = contextlib.nullcontext
_h.stdout_to_devnull = contextlib.nullcontext
"""

VERIFY = ["verify", "seed", "--eps", "0,0.02", "--n", "12", "--workers", "2", "--json"]


def test_a_banner_never_reaches_json_output():
    """With a solver that prints a C-level banner in every process (main and workers), `verify
    --json` still prints one JSON document; the banner goes to stderr or nowhere."""
    proc = run_polylens(VERIFY, BANNER_PRELUDE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one_json_document(proc.stdout)
    assert "FakeSolver" not in proc.stdout


def test_the_guard_catches_a_banner_let_through():
    """Switching polylens' guards off lets the banner through, and the check above fails on it:
    the test can fail, and fails for exactly this drift."""
    proc = run_polylens(VERIFY, UNGUARDED_PRELUDE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FakeSolver" in proc.stdout
    with pytest.raises(AssertionError):
        one_json_document(proc.stdout)


def test_the_real_solver_prints_nothing_on_stdout():
    """The first HiGHS object of a process, made through the adapter, prints nothing on stdout
    (HiGHS 1.16 prints its banner there when constructed directly)."""
    code = ("from polylens.lp.highs import new_highs\nh = new_highs()\nh2 = new_highs()\n"
            "import highspy\nh3 = highspy.Highs()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_human_output_shows_no_solver_banner():
    """Without --json the tables are on stdout and no banner is (the adapter silences it at birth)."""
    proc = run_polylens(["verify", "seed", "--eps", "0.02", "--n", "6", "--workers", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HiGHS" not in proc.stdout and "HiGHS" not in proc.stderr
    assert "eps" in proc.stdout
