"""The lenses of polylens, and the registry that is their only list.

Each family of analyses is a folder under ``polylens/lenses/`` (``verify/``, ``discover/``, ...);
each analysis in it declares a :class:`~polylens.lenses.base.Lens`, and one line of
:data:`BUILTIN` registers it. The CLI, the report, the demo, the explorer, its static export and
the Python front door (``import polylens as pl``) read the registry and never name a lens.

A lens from outside polylens joins with :func:`register` (the same one line):

>>> from polylens.lenses import lens_names
>>> "signatures" in lens_names()
True
"""

from __future__ import annotations

import importlib
import threading
from typing import Iterable

from polylens.errors import ParameterError
from polylens.lenses.base import Lens

__all__ = ["BUILTIN", "Lens", "all_lenses", "get_lens", "lens_names", "on_register", "register", "report_lenses",
           "unregister"]

#: The built-in lenses, in the order of the report and the explorer: "module:attribute" of each Lens.
BUILTIN: tuple[str, ...] = (
    "polylens.lenses.verify.lens:ROBUSTNESS",
    "polylens.lenses.discover.lenses:SIGNATURES",
    "polylens.lenses.discover.lenses:PROTOTYPES",
    "polylens.lenses.discover.lenses:COUNTERFACTUALS",
    "polylens.lenses.discover.lenses:NEURONS",
    "polylens.lenses.discover.lenses:TRACES",
    "polylens.lenses.discover.lenses:TRACE",
    "polylens.lenses.findings.lens:FINDINGS",
    "polylens.lenses.regions.lens:REGIONS",
    "polylens.lenses.bases.lens:BASES_LENS",
    "polylens.lenses.truncation.lens:TRUNCATION",
)

_lock = threading.Lock()
_registry: dict[str, Lens] = {}
_loaded = False
_listeners: list = []
_unlisteners: list = []


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        for ref in BUILTIN:
            mod, _, attr = ref.partition(":")
            lens = getattr(importlib.import_module(mod), attr)
            _registry.setdefault(lens.name, lens)
        _loaded = True


def register(lens: Lens) -> Lens:
    """Add ``lens`` to the registry (after the built-in ones); returns it. A name already taken by
    another lens is refused; registering the same lens again changes nothing."""
    _load_builtin()
    if not isinstance(lens, Lens):
        raise TypeError(f"register() takes a Lens; got {type(lens).__name__}")
    with _lock:
        old = _registry.get(lens.name)
        if old is not None and old is not lens:
            raise ValueError(f"A lens named {lens.name!r} is already registered")
        clash = [l.name for l in _registry.values() if l is not lens and l.cli_name == lens.cli_name]
        if clash:
            raise ValueError(f"The command {lens.cli_name!r} already belongs to lens {clash[0]!r}")
        _registry[lens.name] = lens
    for fn in list(_listeners):
        fn(lens)
    return lens


def unregister(name: str) -> None:
    """Remove a lens added with :func:`register` (tests), and whatever its registration wired
    (its CLI command): afterwards the program looks as if it had never been registered."""
    with _lock:
        lens = _registry.pop(name, None)
    if lens is not None:
        for fn in list(_unlisteners):
            fn(lens)


def on_register(fn, undo=None) -> None:
    """Call ``fn(lens)`` for every lens registered from now on (the CLI adds its command), and
    ``undo(lens)`` for every lens unregistered."""
    _listeners.append(fn)
    if undo is not None:
        _unlisteners.append(undo)


def all_lenses() -> tuple[Lens, ...]:
    """Every registered lens, built-in ones first in :data:`BUILTIN` order."""
    _load_builtin()
    return tuple(_registry.values())


def lens_names() -> tuple[str, ...]:
    return tuple(l.name for l in all_lenses())


def get_lens(name: str) -> Lens:
    """The lens called ``name`` (or whose CLI command is ``name``); ParameterError listing the
    lenses otherwise."""
    for l in all_lenses():
        if l.name == name or l.cli_name == name:
            return l
    raise ParameterError(f"There is no lens {name!r}; the lenses are {', '.join(lens_names())}.")


def report_lenses(only: Iterable[str] | None = None) -> tuple[Lens, ...]:
    """The lenses of the report, in order (``only``: these names, checked)."""
    lenses = [l for l in all_lenses() if l.in_report]
    if only is None:
        return tuple(lenses)
    names = list(only)
    known = {l.name for l in lenses}
    bad = [n for n in names if n not in known]
    if bad:
        raise ParameterError(f"Unknown report sections {', '.join(map(repr, bad))}; choose among "
                             f"{', '.join(l.name for l in lenses)}.")
    return tuple(l for l in lenses if l.name in names)
