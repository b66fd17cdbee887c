"""Database files opened in tests with the engine's SQLite build, never Python's ``sqlite3``.

Two SQLite libraries in one process keep separate POSIX lock bookkeeping: a ``sqlite3``
connection closed (or garbage-collected) while the writer holds a lock in the same process
drops that lock, and a lock ``sqlite3`` holds is invisible to the writer. Tests that run the
writer or the reader in-process inspect files through :func:`open_db`, which also closes the
connection on exit (``with sqlite3.connect(...)`` only ends a transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
from efsqlite.core.connections import readonly_uri


@contextmanager
def open_db(
    path: Path | str, *, readonly: bool = False, busy_timeout_ms: int = 5000
) -> Iterator[apsw.Connection]:
    """A connection to ``path`` (read-only with ``mode=ro`` if asked), closed on exit."""
    if readonly:
        conn = apsw.Connection(
            readonly_uri(Path(path)), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        )
    else:
        conn = apsw.Connection(str(path))
    try:
        conn.set_busy_timeout(busy_timeout_ms)
        yield conn
    finally:
        conn.close()
