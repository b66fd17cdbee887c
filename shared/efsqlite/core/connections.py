"""Opening SQLite files the way this design needs: one writer connection, read-only readers.

DO open the writer connection once per database per execution environment and keep it: every
open costs ``openat`` and lock round trips on EFS.
DO use a rollback journal with ``synchronous=FULL``. DON'T use WAL: it needs shared memory on
one host and does not work over NFS.
DON'T ``open()``, copy or read a database file outside SQLite in a process that holds a
connection to it: POSIX ``close()`` on any descriptor drops that process's locks on the file.
The same goes for a second SQLite library (Python's ``sqlite3``): open files only through
:mod:`efsqlite.core.engine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import apsw

from efsqlite.core import pagevfs, singlestep
from efsqlite.core.exceptions import DatabaseOpenError
from efsqlite.core.names import check_db_name
from efsqlite.core.types import JournalMode

DATABASE_SUFFIX = ".sqlite"
#: SQLite's heap limit (MiB) when neither a setting nor Lambda's memory size gives one.
DEFAULT_HEAP_MB = 256
#: Inclusive bounds of a heap limit setting (MiB).
HEAP_MB_BOUNDS = (16, 10_240)
#: Set by Lambda: the function's memory in MB. The default heap limit is half of it.
LAMBDA_MEMORY_VAR = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
#: Statements are prepared once and reused; packed batches repeat the same SQL text a lot.
STATEMENT_CACHE_SIZE = 512


def database_path(data_dir: Path, db: str) -> Path:
    """Where database ``db`` lives. Refuses names outside ``[a-z0-9_-]{1,64}``."""
    return data_dir / f"{check_db_name(db)}{DATABASE_SUFFIX}"


def open_writer_connection(
    path: Path,
    *,
    journal_mode: JournalMode = "DELETE",
    busy_timeout_ms: int = 5000,
    max_value_bytes: int | None = None,
) -> apsw.Connection:
    """Open (creating if needed) the single read-write connection for one database.

    SQLite runs in autocommit mode unless told otherwise: the writer issues
    ``BEGIN IMMEDIATE``/``COMMIT`` itself, so a batch is exactly one transaction.
    ``max_value_bytes`` caps any string or blob (``SQLITE_LIMIT_LENGTH``): a command that
    builds a bigger one fails at once with ``SQLITE_TOOBIG``. No attached databases, no
    worker threads; ``trusted_schema=OFF``, ``SQLITE_DBCONFIG_DEFENSIVE`` (virtual tables'
    shadow tables are read-only to SQL) and no extension loading, not even from C. The
    functions whose work one VM step can hide are replaced by bounded ones
    (:mod:`efsqlite.core.singlestep`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(
        str(path),
        flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE,
        statementcachesize=STATEMENT_CACHE_SIZE,
        vfs=pagevfs.vfs_name(),
    )
    try:
        conn.set_busy_timeout(busy_timeout_ms)
        (mode,) = conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchall()[0]
        if str(mode).upper() != journal_mode:
            raise DatabaseOpenError(
                f"could not set journal_mode={journal_mode} on {path} (got {mode})"
            )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
        conn.limit(apsw.SQLITE_LIMIT_WORKER_THREADS, 0)
        if max_value_bytes is not None:
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, max_value_bytes)
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0)
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0)
        singlestep.install(conn)  # after the limits: it reads them
    except BaseException:
        conn.close()
        raise
    return conn


def default_heap_mb(environ: Mapping[str, str]) -> int:
    """Half the function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), else 256 MiB."""
    memory = environ.get(LAMBDA_MEMORY_VAR, "").strip()
    if memory.isascii() and memory.isdigit() and int(memory) > 0:
        low, high = HEAP_MB_BOUNDS
        return min(max(int(memory) // 2, low), high)
    return DEFAULT_HEAP_MB


def set_hard_heap_limit(limit_bytes: int) -> int:
    """Lower SQLite's process-wide hard heap limit; returns the limit now in force.

    Like ``PRAGMA hard_heap_limit``, this only ever lowers the limit, so in one process the
    smallest limit anyone set wins, for every connection, writer and reader alike. A
    statement that needs more fails with ``SQLITE_NOMEM`` (``apsw.NoMemError``) instead of
    taking the execution environment down.
    """
    current = int(apsw.hard_heap_limit(-1))
    wanted = int(limit_bytes)
    if wanted > 0 and (current <= 0 or wanted < current):
        apsw.hard_heap_limit(wanted)
        return wanted
    return current


def readonly_uri(path: Path, *, immutable: bool = False) -> str:
    """A ``file:`` URI opening ``path`` read-only.

    ``immutable=1`` skips all locking and change detection: only for a private snapshot that
    never changes in place, never for a file on EFS.
    """
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def open_readonly_connection(
    path: Path, *, busy_timeout_ms: int = 5000, immutable: bool = False
) -> apsw.Connection:
    """Open ``path`` with ``mode=ro``; SQLite itself then refuses to write or to create it."""
    conn = apsw.Connection(
        readonly_uri(path, immutable=immutable),
        flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
    )
    conn.set_busy_timeout(busy_timeout_ms)
    return conn


def open_source_connection(
    path: Path, *, busy_timeout_ms: int = 5000
) -> tuple[apsw.Connection, pagevfs.RawFile]:
    """:func:`open_readonly_connection` through the page VFS, with the file SQLite opened:
    a snapshot copies pages through it while the connection holds its shared lock."""
    conn, raw = pagevfs.open_with_raw_file(
        readonly_uri(path), apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    )
    conn.set_busy_timeout(busy_timeout_ms)
    return conn, raw
