"""The polylens command line.

One typer app, :data:`app`. Every registered lens gets its command from its declaration
(``cli/lenses.py``, which also holds ``report``); the commands that are not analyses register
themselves from their own modules (``cli/models.py``: train, info, predict; ``cli/demo.py``: demo;
``cli/explore.py``: serve, export-site).

Every command has ``--json`` (one JSON object on stdout). Errors a user can cause (a
:class:`~polylens.errors.PolylensError`, a missing file, a bad option value, an unknown option)
print exactly one line ``polylens: error: ...`` on stderr and exit with status 2; a traceback
means a bug in polylens.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import sys
from typing import Sequence

import typer

from polylens import __version__
from polylens.errors import PolylensError

__all__ = ["COMMAND_MODULES", "EXIT_ERROR", "app", "main"]

#: Exit status of every error a user can cause.
EXIT_ERROR = 2

#: Modules under polylens.cli that register commands on :data:`app`, in help order.
COMMAND_MODULES: tuple[str, ...] = ("models", "lenses", "demo", "explore", "construct", "vnncomp")

app = typer.Typer(
    name="polylens",
    help="Open neural networks with geometry and linear programming.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"polylens {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the polylens version and exit.")) -> None:
    """Open neural networks with geometry and linear programming."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def _click_exceptions():
    """The click exception module typer uses (recent typer vendors click as ``typer._click``).
    ``typer.Exit`` and ``typer.Abort`` are public either way."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer on top of click
        from click import exceptions
    return exceptions


def _error(message: str) -> int:
    sys.stderr.write(f"polylens: error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    return EXIT_ERROR


def _os_error_message(e: OSError) -> str:
    if e.filename is not None:
        return f"{e.strerror or e}: {e.filename}"
    return str(e)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    0 on success (or ``--help``), 2 with one line on stderr for any error a user can cause.
    """
    from polylens.stdio import reserved_stdout

    ex = _click_exceptions()
    args = list(sys.argv[1:] if argv is None else argv)
    # Under --json standard output carries exactly one JSON document: whatever a library or a
    # worker process prints goes to standard error instead.
    guard = reserved_stdout() if "--json" in args else contextlib.nullcontext()
    try:
        with guard:
            rv = app(args=args, prog_name="polylens", standalone_mode=False)
    except ex.NoArgsIsHelpError as e:  # bare `polylens`: show the help
        sys.stdout.write(e.format_message() + "\n")
        return 0
    except ex.UsageError as e:
        msg = e.format_message()
        if e.ctx is not None:
            msg = f"{msg.rstrip().rstrip('.')} (see '{e.ctx.command_path} --help')"
        return _error(msg)
    except ex.ClickException as e:
        return _error(e.format_message())
    except typer.Abort:
        return _error("aborted")
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except PolylensError as e:
        return _error(str(e))
    except OSError as e:
        if e.errno == errno.EPIPE:  # `polylens ... | head`: the reader went away
            return 1
        return _error(_os_error_message(e))
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
