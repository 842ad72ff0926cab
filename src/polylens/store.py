"""The results store: one SQLite database per output directory, one row per finished unit.

A long run (a robustness sweep, a signature batch) writes each unit as it finishes, in its own
transaction, keyed by a unit key; rerunning skips the keys already present, so a run killed at any
point (SIGKILL included: SQLite's journal makes each commit atomic) continues where it stopped, with
no lost and no duplicated rows. The run's settings are stored once; reopening the directory with
different settings is refused instead of silently mixing results.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

from polylens.errors import ParameterError


class Store:
    """``Store(path, kind, settings)`` opens (or creates) ``path`` for a run of ``kind``."""

    def __init__(self, path: str | Path, kind: str, settings: dict):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS units (key TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        self._db.commit()
        want = json.dumps({"kind": kind, "settings": settings}, sort_keys=True)
        row = self._db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
        if row is None:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('run', ?)", (want,))
        elif row[0] != want:
            have = json.loads(row[0])
            diff = sorted(k for k in set(have["settings"]) | set(settings)
                          if have["settings"].get(k) != settings.get(k))
            raise ParameterError(
                f"{self.path} holds a {have['kind']} run with other settings ({', '.join(diff) or 'kind'} differ); "
                "use another --out directory or delete it.")

    def done_keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM units")}

    def put_many(self, items: Iterable[tuple[str, dict]]) -> None:
        """Write finished units in one transaction; keys already present are left as they are."""
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO units VALUES (?, ?)",
                                 [(k, json.dumps(v, separators=(",", ":"))) for k, v in items])

    def items(self) -> Iterator[tuple[str, dict]]:
        for k, v in self._db.execute("SELECT key, payload FROM units ORDER BY key"):
            yield k, json.loads(v)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM units").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
