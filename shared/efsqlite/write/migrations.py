"""Ordered SQL migrations, each applied and recorded in one transaction.

Files are named ``NNNN_description.sql`` (``0001_create_orders.sql``) and applied in numeric
order. A folder ``<migrations_dir>/<db>/`` holds migrations for database ``<db>`` only; without
one, the ``*.sql`` files at the top apply to every database.

DO add a new file for every change. DON'T edit a file that has been applied: the writer
compares checksums and refuses to go on (``MigrationError``) rather than guess.
DON'T put ``BEGIN``/``COMMIT`` in a migration: the runner owns the transaction.
DO put ``VACUUM`` in a migration file of its own (nothing else in it): SQLite cannot vacuum
inside a transaction, so that one file runs ``VACUUM`` first and then commits its record.
A crash between the two runs ``VACUUM`` again, which is harmless. ``VACUUM INTO`` is refused.
DO save migrations as UTF-8 text. A file that is not UTF-8, holds a NUL byte, is not a regular
file (a FIFO would block the cold start) or cannot be read, and a folder that cannot be
listed, are a ``MigrationError`` naming the path: never a silent "no migrations", which
would build a database without its tables and reject every command against them.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import apsw

from efsqlite.core.engine import Connection
from efsqlite.core.ledger import MIGRATIONS_TABLE, ensure_ledger, schema_version
from efsqlite.write.exceptions import MigrationError

_TRANSACTION_WORDS = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"}
_FILE_RE = re.compile(r"^([0-9]{1,9})_([A-Za-z0-9_.-]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(migrations_dir: Path | None, db: str) -> list[Migration]:
    """The migrations for ``db``, sorted, refusing gaps and duplicate versions."""
    if migrations_dir is None:
        return []
    if not migrations_dir.is_dir():
        raise MigrationError(f"migrations folder {migrations_dir} does not exist")
    folder = migrations_dir / db if (migrations_dir / db).is_dir() else migrations_dir
    found: dict[int, Migration] = {}
    for path in _sql_files(folder):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version == 0:
            raise MigrationError(f"{path.name}: versions start at 1")
        if version in found:
            raise MigrationError(f"{path.name}: version {version} appears twice in {folder}")
        found[version] = Migration(version, match.group(2), _read_migration(path))
    migrations = [found[v] for v in sorted(found)]
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration versions must run 1, 2, 3...: found {migration.version} where "
                f"{expected} was expected in {folder}"
            )
    return migrations


def _sql_files(folder: Path) -> list[Path]:
    """The ``*.sql`` entries of ``folder``, sorted; an unlistable folder is an error."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries if entry.name.endswith(".sql")]
    except OSError as exc:
        raise MigrationError(f"cannot list migrations folder {folder}: {exc}") from exc
    return [folder / name for name in sorted(names)]


def _read_migration(path: Path) -> str:
    """A migration's text: a regular file of UTF-8 without NUL bytes, else ``MigrationError``."""
    try:
        if not path.is_file():
            raise MigrationError(f"migration {path} is not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise MigrationError(f"cannot read migration {path}: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4]
        raise MigrationError(
            f"migration {path} is not UTF-8 text (at byte {exc.start}: {bad!r})"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise MigrationError(f"migration {path} holds a NUL byte (at character {nul})")
    return text


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (triggers and quoted ``;`` stay whole)."""
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if apsw.complete(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise MigrationError(f"incomplete SQL statement at end of migration: {buffer[:200]!r}")
    return statements


def _is_transaction_control(statement: str) -> bool:
    text = re.sub(r"(--[^\n]*(\n|$))|(/\*.*?\*/)", " ", statement, flags=re.S)
    head = re.match(r"\s*([A-Za-z]+)", text)
    return head is not None and head.group(1).upper() in _TRANSACTION_WORDS


def migrate(conn: Connection, migrations: list[Migration]) -> int:
    """Bring the database up to the newest migration; returns the schema version.

    Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with its
    record and the ``user_version`` bump, so a crash leaves it fully applied or not at all.
    The ledger tables commit with the first pending migration: a reader never sees a new
    database that has a ledger but not yet the application's tables (schema version 0).
    Already-applied migrations are checked against their recorded checksum.
    """
    pending: list[Migration] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        ensure_ledger(conn)
        applied = {
            version: sha
            for version, sha in conn.execute(f"SELECT version, sha256 FROM {MIGRATIONS_TABLE}")
        }
        pending = _pending(migrations, applied)
        if pending and not is_vacuum(pending[0]):
            _run_migration(conn, pending.pop(0))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    for migration in pending:
        _apply_one(conn, migration)
    return schema_version(conn)


def _pending(migrations: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """The migrations still to run, after checking the applied ones against this code."""
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.sha256:
            raise MigrationError(
                f"migration {migration.version}_{migration.name} changed after it was "
                "applied; add a new migration instead of editing an applied one"
            )
    extra = set(applied) - {m.version for m in migrations}
    if extra:
        raise MigrationError(
            f"database has migrations {sorted(extra)} that this code does not know: "
            "is an older deployment running?"
        )
    return [m for m in migrations if m.version not in applied]


_VACUUM_RE = re.compile(r"\s*VACUUM\s*(main\s*)?;?\s*", re.IGNORECASE)


def is_vacuum(migration: Migration) -> bool:
    """True for a migration whose one statement is ``VACUUM`` (comments aside)."""
    text = re.sub(r"(--[^\n]*(\n|$))|(/\*.*?\*/)", " ", migration.sql, flags=re.S)
    return _VACUUM_RE.fullmatch(text) is not None


def _vacuum(conn: Connection, migration: Migration) -> None:
    """``VACUUM`` outside any transaction; it attaches a scratch database, so the writer's
    limit of no attached databases is lifted for this statement only."""
    attached = conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 1)
    try:
        conn.execute("VACUUM")
    except apsw.Error as exc:
        raise MigrationError(
            f"migration {migration.version}_{migration.name} failed: {exc}"
        ) from exc
    finally:
        conn.limit(apsw.SQLITE_LIMIT_ATTACHED, attached)


def _apply_one(conn: Connection, migration: Migration) -> None:
    if is_vacuum(migration):
        _vacuum(conn, migration)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-check under the write lock: another writer may have applied it meanwhile.
        if not conn.execute(
            f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE version = ?", (migration.version,)
        ).fetchone():
            _run_migration(conn, migration)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _run_migration(conn: Connection, migration: Migration) -> None:
    """Run one migration and record it, inside the caller's transaction."""
    statements = [] if is_vacuum(migration) else split_statements(migration.sql)
    for statement in statements:
        if _is_transaction_control(statement):
            raise MigrationError(
                f"migration {migration.version}_{migration.name}: remove transaction control "
                f"({statement.split()[0]}); each migration already runs in one transaction"
            )
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name, sha256, applied_at_ms) "
            "VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, migration.sha256, int(time.time() * 1000)),
        )
        conn.execute(f"PRAGMA user_version = {int(migration.version)}")
    except apsw.Error as exc:
        raise MigrationError(
            f"migration {migration.version}_{migration.name} failed: {exc}"
        ) from exc


def _rollback(conn: Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
