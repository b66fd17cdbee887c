"""Opening SQLite files the way this design needs: one writer connection, read-only readers.

DO open the writer connection once per database per execution environment and keep it: every
open costs ``openat`` and lock round trips on EFS.
DO use a rollback journal with ``synchronous=FULL``. DON'T use WAL: it needs shared memory on
one host and does not work over NFS.
DON'T ``open()``, copy or read a database file outside SQLite in a process that holds a
connection to it: POSIX ``close()`` on any descriptor drops that process's locks on the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from efsqlite.names import check_db_name
from efsqlite.types import JournalMode

DATABASE_SUFFIX = ".sqlite"
#: Statements are prepared once and reused; packed batches repeat the same SQL text a lot.
STATEMENT_CACHE_SIZE = 512


def database_path(data_dir: Path, db: str) -> Path:
    """Where database ``db`` lives. Refuses names outside ``[a-z0-9_-]{1,64}``."""
    return data_dir / f"{check_db_name(db)}{DATABASE_SUFFIX}"


def open_writer_connection(
    path: Path, *, journal_mode: JournalMode = "DELETE", busy_timeout_ms: int = 5000
) -> sqlite3.Connection:
    """Open (creating if needed) the single read-write connection for one database.

    The connection is in autocommit mode (``isolation_level=None``): the writer issues
    ``BEGIN IMMEDIATE``/``COMMIT`` itself, so a batch is exactly one transaction.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=STATEMENT_CACHE_SIZE,
    )
    try:
        (mode,) = conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()
        if str(mode).upper() != journal_mode:
            raise sqlite3.OperationalError(
                f"could not set journal_mode={journal_mode} on {path} (got {mode})"
            )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def readonly_uri(path: Path, *, immutable: bool = False) -> str:
    """A ``file:`` URI opening ``path`` read-only.

    ``immutable=1`` skips all locking and change detection: only for a private snapshot that
    never changes in place, never for a file on EFS.
    """
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def open_readonly_connection(
    path: Path, *, busy_timeout_ms: int = 5000, immutable: bool = False
) -> sqlite3.Connection:
    """Open ``path`` with ``mode=ro``; SQLite itself then refuses to write or to create it."""
    return sqlite3.connect(
        readonly_uri(path, immutable=immutable),
        uri=True,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
