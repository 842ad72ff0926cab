"""Standard output belongs to polylens.

Under ``--json`` every command prints exactly one JSON document on standard output, whatever the
libraries beneath it print. Two tools keep that promise:

* :func:`reserved_stdout` (used by the CLI around every ``--json`` command) sends everything that
  is not polylens' own document to standard error: Python-level prints of any library, C-level
  writes to file descriptor 1, and whatever worker processes started inside it print (they inherit
  the redirected descriptor). :func:`json_stream` is where the document goes meanwhile.
* :func:`stdout_to_devnull` silences descriptor 1 around a call that is known to print and cannot
  be told not to: the solver adapter uses it for the first ``highspy.Highs()`` of a process (HiGHS
  1.16 prints a banner there before any option can be set), so the human output shows no banner
  either.

Both flush the C stdio buffers before they restore descriptor 1: on a pipe C's stdout is fully
buffered, and text left in the buffer would otherwise reach the real stdout later, at the next
flush or at exit. Both are process-wide; they are meant for the CLI's main thread and for a
one-time call under a lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
from typing import IO, Iterator

__all__ = ["flush_c_stdio", "json_stream", "reserved_stdout", "stdout_to_devnull"]

_streams: list[IO[str]] = []


def flush_c_stdio() -> None:
    """Flush every C stdio output stream of the process (``fflush(NULL)``)."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol table
        pass


def _flush_python(stream) -> None:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        stream.flush()


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None


def json_stream() -> IO[str]:
    """Where polylens' own standard output goes: the reserved stream inside :func:`reserved_stdout`,
    else ``sys.stdout``."""
    return _streams[-1] if _streams else sys.stdout


@contextlib.contextmanager
def reserved_stdout() -> Iterator[IO[str]]:
    """Inside the block standard output carries only what is written to :func:`json_stream`.

    When ``sys.stdout`` is a real file descriptor, descriptor 1 is pointed at standard error and
    the reserved stream is a duplicate of the original descriptor; when it is not (an in-memory
    capture, as in tests), ``sys.stdout`` is pointed at ``sys.stderr`` instead.
    """
    stream = sys.stdout
    fd = _fileno(stream)
    _flush_python(stream)
    if fd is None:
        _streams.append(stream)
        sys.stdout = sys.stderr
        try:
            yield stream
        finally:
            sys.stdout = stream
            _streams.pop()
        return
    flush_c_stdio()
    saved = os.dup(fd)
    os.dup2(sys.stderr.fileno(), fd)
    out = os.fdopen(saved, "w", encoding="utf-8", closefd=False)
    _streams.append(out)
    try:
        yield out
    finally:
        _streams.pop()
        _flush_python(stream)
        flush_c_stdio()
        _flush_python(out)
        os.dup2(saved, fd)
        os.close(saved)


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """File descriptor 1 points at /dev/null inside the block (Python's and C's buffers flushed
    on the way in and before the way out)."""
    _flush_python(sys.stdout)
    flush_c_stdio()
    saved = os.dup(1)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
        finally:
            os.close(null)
        yield
    finally:
        flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
