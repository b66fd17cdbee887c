"""What the stack holds: queue and DLQ counts, each database's position, schema version and
command outcomes, and the SQLite release the reader runs.

:func:`collect_status` gathers a :class:`StatusReport` (dataclasses; ``as_dict()`` is the JSON
``efsqlite status --json`` prints). A database is asked of the reader first; if the reader
refuses its ledger tables and the database's file is local (the local stack), the file is read
directly, read-only.

DO ask the reader: it is the only view of EFS a client has in AWS. DON'T open a database file
for writing here: the writer owns it (files are opened read-only).
DO keep the ledger queries in this module (``OUTCOMES_SQL``, ``SQLITE_VERSION_SQL``): the CLI
and scripts ask the same questions the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efsqlite.client import Endpoints, ReadClient
from efsqlite.client.exceptions import ReadRequestError
from efsqlite.client.queues import QueueCounts, connect_sqs, queue_counts
from efsqlite.core import engine
from efsqlite.core.ledger import COMMANDS_TABLE, FAILURES_TABLE

#: One row per outcome (``applied``, ``rejected``, ...) and ``pending``: commands that failed
#: and have not settled yet.
OUTCOMES_SQL = (
    f"SELECT outcome, count(*) FROM {COMMANDS_TABLE} GROUP BY outcome "
    f"UNION ALL SELECT 'pending', count(*) FROM {FAILURES_TABLE}"
)
SQLITE_VERSION_SQL = "SELECT sqlite_version()"


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """One database: where its writer stands, or why that is unknown (``error``)."""

    position: str | None = None
    schema_version: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    via: str | None = None  # "reader" or "file"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, outcome: str) -> int:
        """How many commands have ``outcome`` (``applied``, ``rejected``, ``pending``)."""
        return self.outcomes.get(outcome, 0)

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {
            "position": self.position,
            "schema_version": self.schema_version,
            "outcomes": dict(self.outcomes),
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class SqliteVersions:
    """The SQLite release here (``local``) and the reader's (``None`` if it would not say)."""

    local: str
    reader: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"cli": self.local, "reader": self.reader}


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The queue, the DLQ (``None`` when unknown), the databases asked about, SQLite."""

    queue: QueueCounts | None
    dlq: QueueCounts | None
    databases: dict[str, DatabaseStatus]
    sqlite: SqliteVersions
    dlq_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The shape of ``efsqlite status --json``."""
        return {
            "queue": self.queue.as_dict() if self.queue else None,
            "dlq": self.dlq.as_dict() if self.dlq else None,
            "databases": {db: info.as_dict() for db, info in self.databases.items()},
            "sqlite": self.sqlite.as_dict(),
        }


def database_status_from_file(path: Path) -> DatabaseStatus:
    """Position, schema version and outcome counts straight from a local file (read-only).

    Raises the engine's error if the file is not a database or has no ledger.
    """
    from efsqlite.core.connections import open_readonly_connection
    from efsqlite.core.ledger import read_position, schema_version

    conn = open_readonly_connection(path)
    try:
        counts = {str(k): int(v) for k, v in conn.execute(OUTCOMES_SQL)}
        return DatabaseStatus(
            position=str(read_position(conn)),
            schema_version=schema_version(conn),
            outcomes=counts,
            via="file",
        )
    finally:
        conn.close()


def database_status(reader: ReadClient, db: str, local_file: Path | None = None) -> DatabaseStatus:
    """One database's status through the reader, else from ``local_file`` if it exists.

    Never raises for a refused or missing database: the reason is in ``error``.
    """
    try:
        result = reader.query(OUTCOMES_SQL, db=db)
        return DatabaseStatus(
            position=None if result.position is None else str(result.position),
            schema_version=result.schema_version,
            outcomes={str(r[0]): int(r[1]) for r in result.rows},
            via="reader",
        )
    except ReadRequestError as exc:
        # The reader may refuse its ledger tables; a local data folder can be read directly.
        if local_file is not None and local_file.is_file():
            try:
                return database_status_from_file(local_file)
            except engine.Error as file_exc:
                return DatabaseStatus(error=f"{type(file_exc).__name__}: {file_exc}")
        return DatabaseStatus(error=str(exc))


def reader_sqlite_version(reader: ReadClient, db: str) -> str | None:
    """The SQLite release the reader runs, asked of the reader itself (None if it refuses)."""
    try:
        result = reader.query(SQLITE_VERSION_SQL, db=db)
    except ReadRequestError:
        return None
    return str(result.rows[0][0]) if result.rows else None


def local_databases(endpoints: Endpoints) -> list[str]:
    """The databases in the local stack's folder, by name (none in AWS mode)."""
    folder = endpoints.databases_dir
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.sqlite"))


def collect_status(
    endpoints: Endpoints,
    *,
    databases: Iterable[str] | None = None,
    session: Any | None = None,
    sqs: Any | None = None,
    reader: ReadClient | None = None,
) -> StatusReport:
    """Queue and DLQ counts, and the status of ``databases`` (default: every database of the
    local stack's folder; none in AWS mode unless named).

    ``sqs`` and ``reader`` default to clients built from ``endpoints`` and ``session``; the
    DLQ is found from the queue's redrive policy when ``endpoints.dlq_url`` is not set.
    Raises :class:`~efsqlite.client.exceptions.QueueError` if the queue cannot be reached.
    """
    if sqs is None:
        sqs, endpoints = connect_sqs(endpoints, session)
    queue = queue_counts(sqs, endpoints.queue_url)
    dlq = queue_counts(sqs, endpoints.dlq_url)
    names = list(databases or []) or local_databases(endpoints)
    folder = endpoints.databases_dir
    found: dict[str, DatabaseStatus] = {}
    reader_version: str | None = None
    if names and (reader is not None or endpoints.reader_function):
        if reader is None:
            reader = ReadClient(session=session, endpoints=endpoints)
        for db in names:
            local = folder / f"{db}.sqlite" if folder is not None else None
            found[db] = database_status(reader, db, local)
        reader_version = reader_sqlite_version(reader, names[0])
    return StatusReport(
        queue=queue,
        dlq=dlq,
        databases=found,
        sqlite=SqliteVersions(local=engine.sqlite_version(), reader=reader_version),
        dlq_url=endpoints.dlq_url,
    )
