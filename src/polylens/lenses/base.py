"""The shape of a lens: one value that the CLI, the report, the demo, the explorer and JSON all read.

A *lens* is one analysis of polylens (robustness, signatures, regions of a slice, ...), declared once
as a :class:`Lens` and registered in :mod:`polylens.lenses` with one line. Everything that presents
analyses is derived from the registry and never names a lens:

* the CLI makes one command per lens (``polylens <command> MODEL [options] [--data F.npz] [--n N]
  [--out DIR] [--json]``), its options generated from the lens's options dataclass;
* the report and the demo run every lens with ``in_report`` in registry order, one section each,
  with one progress stage each;
* the explorer answers ``/api/lens/{name}[/{kind}]`` from the lens's :class:`View` payloads, loads
  the lens's view module (or the generic view), and the static export precomputes the same answers;
* ``--json`` prints the result's ``to_dict()``.

A lens declares:

``name``, ``title``, ``family``, ``summary``
    what it is called (``name`` is also the report section id and the API name);
``options``
    a frozen dataclass deriving :class:`LensOptions`, whose fields are declared with :func:`option`
    (default, help, bounds or choices); values are checked when an instance is made, with the one
    message template ``The 'eps' parameter of signatures must be a float in [0, 1]. Got -0.1 instead.``;
``run(model, data, options, ctx) -> result``
    the analysis: ``data`` a :class:`~polylens.data.dataset.Dataset`, ``ctx`` a :class:`RunContext`
    (progress callbacks, a working directory for resumable state); the result is a frozen value with
    ``to_dict()`` (JSON-ready) and ``_repr_html_()`` (Jupyter);
``section(result, ctx) -> Section``
    how the result becomes a report section (text, figures, tables, data), see
    :class:`~polylens.report.html.Section`;
``view``
    what the explorer needs: a :class:`View` (payloads and an optional ES module in the lens's folder);
``show(result, console)``
    its terminal rendering (default: the section's shown tables).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from polylens.errors import ParameterError

__all__ = [
    "Lens", "LensOptions", "OptionSpec", "Payload", "RunContext", "SectionContext", "View", "coerce_option",
    "option", "option_specs",
]

_NOOP = lambda *_a, **_k: None  # noqa: E731


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class OptionSpec:
    """One option of a lens, as declared by :func:`option` and read from the options dataclass.

    ``name``: the field name (``per_digit``); ``flag``: its command-line flag (``--per-digit``);
    ``kind``: ``float``, ``int``, ``bool``, ``str``, ``floats``/``ints``/``strs`` (comma-separated
    lists on the command line, tuples in Python), or an Enum class; ``optional``: None is a value
    (shown as "none"); ``lo``/``hi`` (with ``lo_open``/``hi_open``): bounds of numbers (of each item
    of a list); ``choices``: the allowed strings; ``cli``: whether the command line offers it.
    """

    name: str
    flag: str
    help: str
    default: Any
    kind: Any
    optional: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    cli: bool = True

    @property
    def is_list(self) -> bool:
        return self.kind in ("floats", "ints", "strs")

    def describe(self) -> str:
        """What a value must be, for the one message template (``a float in [0, 1]``)."""
        def interval(num: str) -> str:
            lb, rb = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return (f"{num} in {lb}{'-inf' if self.lo is None else _num(self.lo)}, "
                    f"{'inf' if self.hi is None else _num(self.hi)}{rb}")
        k = self.kind
        if isinstance(k, type) and issubclass(k, enum.Enum):
            text = f"one of {', '.join(repr(m.value) for m in k)}"
        elif self.choices is not None:
            text = f"one of {', '.join(map(repr, self.choices))}"
        elif k == "float":
            text = interval("a float")
        elif k == "int":
            text = interval("an int")
        elif k == "bool":
            text = "true or false"
        elif k == "floats":
            text = "a comma-separated list of " + interval("floats")
        elif k == "ints":
            text = "a comma-separated list of " + interval("ints")
        elif k == "strs":
            text = "a comma-separated list of names"
        else:
            text = "a string"
        return text + (", or none" if self.optional else "")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def option(default: Any, help: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, choices: Sequence[str] | None = None, flag: str | None = None,
           cli: bool = True) -> Any:
    """A field of a lens's options dataclass: its default, one line of help, and what values are
    allowed (``lo``/``hi`` bounds for numbers and for the items of number lists, ``choices`` for
    strings). ``flag`` overrides the command-line flag (default ``--field-name``); ``cli=False``
    keeps an option out of the command line (Python and report only)."""
    meta = {"polylens_option": dict(help=help, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open,
                                    choices=tuple(choices) if choices is not None else None, flag=flag, cli=cli)}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


def _kind_of(tp: Any) -> tuple[Any, bool]:
    """(kind, optional) of a field's type annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"unsupported option type {tp!r}")
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else str
        return {float: "floats", int: "ints", str: "strs"}[item], optional
    if tp is bool:
        return "bool", optional
    if tp is float:
        return "float", optional
    if tp is int:
        return "int", optional
    if tp is str:
        return "str", optional
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp, optional
    raise TypeError(f"unsupported option type {tp!r}")


@functools.lru_cache(maxsize=None)
def option_specs(cls: type) -> tuple[OptionSpec, ...]:
    """The :class:`OptionSpec` of every field of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("polylens_option")
        if meta is None:
            raise TypeError(f"{cls.__name__}.{f.name} must be declared with polylens.lenses.base.option()")
        kind, optional = _kind_of(hints[f.name])
        out.append(OptionSpec(name=f.name, flag=meta["flag"] or "--" + f.name.replace("_", "-"), help=meta["help"],
                              default=f.default, kind=kind, optional=optional, lo=meta["lo"], hi=meta["hi"],
                              lo_open=meta["lo_open"], hi_open=meta["hi_open"], choices=meta["choices"],
                              cli=meta["cli"]))
    return tuple(out)


def _fail(spec: OptionSpec, where: str, got: Any, label: str | None = None) -> ParameterError:
    what = f"'{label}' option" if label else f"'{spec.name}' parameter"
    return ParameterError(f"The {what} of {where} must be {spec.describe()}. Got {got!r} instead.")


def _in_bounds(spec: OptionSpec, v: float) -> bool:
    if spec.lo is not None and (v < spec.lo or (spec.lo_open and v == spec.lo)):
        return False
    if spec.hi is not None and (v > spec.hi or (spec.hi_open and v == spec.hi)):
        return False
    return True


def _scalar(spec: OptionSpec, kind: str, value: Any, where: str, got: Any, label: str | None) -> Any:
    if kind == "float":
        if isinstance(value, bool):
            raise _fail(spec, where, got, label)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise _fail(spec, where, got, label) from None
        if not math.isfinite(v) or not _in_bounds(spec, v):
            raise _fail(spec, where, got, label)
        return v
    if kind == "int":
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise _fail(spec, where, got, label)
        try:
            v = int(value.strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise _fail(spec, where, got, label) from None
        if not _in_bounds(spec, v):
            raise _fail(spec, where, got, label)
        return v
    if not isinstance(value, str):
        raise _fail(spec, where, got, label)
    return value.strip()


def coerce_option(spec: OptionSpec, value: Any, where: str, label: str | None = None) -> Any:
    """``value`` (a Python value, a JSON value or command-line text) as the option's type, checked
    against its bounds or choices; ParameterError with the one message template otherwise (naming
    the command-line flag ``label`` when given, else the parameter)."""
    got = value
    if spec.optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", ""))):
        return None
    k = spec.kind
    if isinstance(k, type) and issubclass(k, enum.Enum):
        if isinstance(value, k):
            return value
        for m in k:
            if isinstance(value, str) and value.strip().lower() in (str(m.value).lower(), m.name.lower()):
                return m
        raise _fail(spec, where, got, label)
    if k == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        raise _fail(spec, where, got, label)
    if spec.is_list:
        if isinstance(value, str):
            items = [t.strip() for t in value.split(",")]
            if not value.strip() or any(t == "" for t in items):
                raise _fail(spec, where, got, label)
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise _fail(spec, where, got, label)
        item_kind = {"floats": "float", "ints": "int", "strs": "str"}[k]
        out = tuple(_scalar(spec, item_kind, v, where, got, label) for v in items)
        if spec.choices is not None and any(v not in spec.choices for v in out):
            raise _fail(spec, where, got, label)
        return out
    v = _scalar(spec, k, value, where, got, label)
    if spec.choices is not None and v not in spec.choices:
        raise _fail(spec, where, got, label)
    return v


@dataclass(frozen=True)
class LensOptions:
    """Base class of a lens's options: a frozen dataclass whose fields are declared with
    :func:`option`. Every value is checked (and converted: "0,0.01" to a tuple, "hull" to its Enum)
    when an instance is made; ``where`` names the lens in error messages.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class MyOptions(LensOptions):
    ...     where = "mylens"
    ...     eps: float = option(0.02, "Radius of the ball.", lo=0, hi=1)
    >>> MyOptions(eps="0.05").eps
    0.05
    """

    where: ClassVar[str] = "a lens"

    def __post_init__(self):
        for spec in option_specs(type(self)):
            object.__setattr__(self, spec.name, coerce_option(spec, getattr(self, spec.name), self.where))

    @classmethod
    def make(cls, values: Mapping[str, Any] | None = None, **more: Any):
        """An instance from a mapping of field names (unknown names refused, naming every one)."""
        values = {**(values or {}), **more}
        known = {s.name for s in option_specs(cls)}
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            raise ParameterError(f"{cls.where} has no option{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))}; its options are {', '.join(sorted(known))}.")
        return cls(**values)

    @classmethod
    def from_text(cls, values: Mapping[str, Any], labels: Mapping[str, str] | None = None):
        """An instance from command-line or request values: each is converted and checked first, and an
        error names it by ``labels[name]`` (e.g. its flag ``--eps``) when given."""
        specs = {s.name: s for s in option_specs(cls)}
        labels = labels or {}
        unknown = sorted(k for k in values if k not in specs)
        if unknown:
            raise ParameterError(f"{cls.where} has no option{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(map(repr, unknown))}; its options are {', '.join(sorted(specs))}.")
        return cls(**{k: coerce_option(specs[k], v, cls.where, labels.get(k)) for k, v in values.items()})

    def as_dict(self) -> dict:
        """The options by field name, as Python values."""
        return {s.name: getattr(self, s.name) for s in option_specs(type(self))}

    def to_dict(self) -> dict:
        """The options as JSON-ready values (Enums by value, tuples as lists)."""
        out = {}
        for spec in option_specs(type(self)):
            v = getattr(self, spec.name)
            out[spec.name] = v.value if isinstance(v, enum.Enum) else (list(v) if isinstance(v, tuple) else v)
        return out


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class RunContext:
    """What a lens's ``run`` may use besides its inputs: ``progress(message)`` for a stage it starts,
    ``units(done, total)`` for the progress of a long stage, and ``workdir``, a directory for state
    that makes a long run resumable (None: keep nothing), and ``earlier``, the results of the lenses
    that already ran in this report, by lens name (a lens that reads another's result takes it from
    there instead of running that lens again)."""

    progress: Callable[[str], None] = _NOOP
    units: Callable[[int, int], None] = _NOOP
    workdir: Path | None = None
    earlier: Mapping[str, Any] = field(default_factory=dict)


class SectionContext:
    """What a lens's ``section`` may use besides its result: the ``model`` and ``data`` it ran on,
    ``draw`` (False: tables and data only, no figures), and the neurons' display names (the card's
    name where there is one, else a suggestion, else the key), computed once on first use."""

    def __init__(self, model: Any, data: Any, draw: bool = True):
        self.model = model
        self.data = data
        self.draw = draw

    @functools.cached_property
    def names(self) -> dict[str, str]:
        from polylens.lenses.discover.names import display_names

        return display_names(self.model, None if self.data is None else self.data.x)


# ---------------------------------------------------------------------------------------------
# The explorer


@dataclass(frozen=True)
class Payload:
    """One kind of answer the explorer asks a lens for.

    ``build(session, params)`` returns a JSON-ready dict; ``session`` is the explorer's
    :class:`~polylens.explorer.api.Session` (model, test data, settings, caches) and ``params`` the
    request's parameters, checked against ``params`` (an options-like dataclass deriving
    :class:`LensOptions`, or None for no parameters). ``per_input``: the request also names an
    input (``sample`` or ``x``), given to ``build`` as ``params["input"]`` (an
    :class:`~polylens.explorer.api.Input`). ``background``: the answer is computed once in the
    explorer's analysis thread; requests see ``{"status": "running"}`` until it is ready. ``heavy``:
    it solves LPs, so the live server runs one such request at a time, skips it when the client has
    gone and answers ``{"status": "timeout"}`` after its request timeout. ``warm``: the live server
    asks for it once when it starts (e.g. to start a background sweep).

    The static export precomputes answers: for every parameter set of ``grid(session, eps_grid)``
    (default: only the defaults) and, for ``per_input`` payloads, every exported sample; ``export``
    may compute them all at once (for batching) and returns ``{canonical key: payload}``
    (see :func:`polylens.explorer.api.canonical_key`).
    """

    build: Callable[[Any, Mapping[str, Any]], dict]
    params: type | None = None
    per_input: bool = False
    background: bool = False
    heavy: bool = False
    warm: bool = False
    grid: Callable[[Any, Sequence[float]], Sequence[Mapping[str, Any]]] | None = None
    export: Callable[[Any, Any, Sequence[float]], Mapping[str, dict]] | None = None


@dataclass(frozen=True)
class View:
    """What the explorer shows of a lens: ``payloads`` by kind (``"main"`` is ``/api/lens/{name}``,
    any other kind ``/api/lens/{name}/{kind}``) and ``module``, the file name of an ES module in the
    lens's own folder that draws them (it exports ``mount(root, app, lens)``; see
    ``docs/explorer.md``). Without a module the page uses the generic view, which shows the
    ``main`` payload's tables and figures. Without payloads, ``main`` is the lens run with its
    explorer options (``options``, over the lens's defaults) and drawn as its report section."""

    payloads: Mapping[str, Payload] = field(default_factory=dict)
    module: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100


# ---------------------------------------------------------------------------------------------
# The lens


@dataclass(frozen=True)
class Lens:
    """One analysis, declared once (see the module docstring for what each field means).

    ``command``: the CLI command (default: ``name``); ``needs_data``: whether ``run`` reads labelled
    inputs (the CLI then offers ``--data`` and ``--n``); ``in_report``: whether the report and the
    demo run it; ``report_options``: option values the report uses instead of the defaults;
    ``quick``: option values for a quick run (the conformance suite, smoke tests); ``prepare``: a
    CLI hook run before ``run`` (``prepare(model, options, out) -> (model, extra JSON fields)``),
    e.g. to apply and save neuron names.
    """

    name: str
    title: str
    family: str
    summary: str
    options: type
    run: Callable[[Any, Any, Any, RunContext], Any]
    section: Callable[[Any, SectionContext], Any] | None = None
    view: View | None = None
    show: Callable[[Any, Any], None] | None = None
    command: str | None = None
    needs_data: bool = True
    in_report: bool = True
    report_options: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[[Any, Any, Path | None], tuple[Any, dict]] | None = None
    package: str = ""

    def __post_init__(self):
        import re

        if not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise ValueError(f"A lens name must be lower-case letters, digits and '-'; got {self.name!r}")
        if not (isinstance(self.options, type) and issubclass(self.options, LensOptions)):
            raise TypeError(f"The options of lens {self.name!r} must be a LensOptions dataclass")
        option_specs(self.options)  # fails early on an undeclared field
        if not self.package:
            object.__setattr__(self, "package", getattr(self.run, "__module__", "") or "")

    @property
    def cli_name(self) -> str:
        return self.command or self.name

    def make_options(self, values: Mapping[str, Any] | None = None, *, report: bool = False):
        """The lens's options from ``values`` over its defaults (``report``: over its report options)."""
        base = dict(self.report_options) if report else {}
        return self.options.make({**base, **(values or {})})

    def folder(self) -> Path:
        """The folder of the lens's package (where its view module lives)."""
        import importlib

        mod = importlib.import_module(self.package)
        return Path(mod.__file__).resolve().parent
