"""What the stack holds: queue and DLQ counts, each database's position, schema version,
command outcomes and failing commands (the one blocking its group, if any), and the SQLite
release the reader runs.

:func:`collect_status` gathers a :class:`StatusReport` (dataclasses; ``as_dict()`` is the JSON
``efsqlite status --json`` prints). A database is asked of the reader (its
``database_status`` request, read from the source file, never from a snapshot); if the reader
cannot answer and the database's file is local (the local stack), the file is read directly,
read-only.

DO ask the reader: it is the only view of EFS a client has in AWS. DON'T open a database file
for writing here: the writer owns it (files are opened read-only).
DON'T count failures through a query on the reader's snapshot: it refreshes only when the
position or schema version moves, and a failure moves neither (status once showed pending 0
while a command was failing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from efsqlite.client import Endpoints, ReadClient
from efsqlite.client.exceptions import ReaderInvokeError, ReadRequestError
from efsqlite.client.queues import QueueCounts, connect_sqs, queue_counts
from efsqlite.core import engine
from efsqlite.core.ledger import CommandStatus, LedgerSummary
from efsqlite.core.ledger import summary as ledger_summary

SQLITE_VERSION_SQL = "SELECT sqlite_version()"


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """One database: where its writer stands and what is failing, or why that is unknown
    (``error``).

    ``outcomes`` counts settled commands (``applied``, ``rejected``); ``pending`` and
    ``in_dlq`` count failing ones; ``blocked_by`` is the command holding the database's FIFO
    group while SQS retries it (``None`` when nothing is, or when the queue is empty so no
    message can be waiting behind it).
    """

    position: str | None = None
    schema_version: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    via: str | None = None  # "reader" or "file"
    error: str | None = None
    pending: int = 0
    in_dlq: int = 0
    blocked_by: CommandStatus | None = None
    failures: list[CommandStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, outcome: str) -> int:
        """How many commands settled with ``outcome`` (``applied``, ``rejected``)."""
        return self.outcomes.get(outcome, 0)

    @classmethod
    def from_summary(cls, summary: LedgerSummary, via: str) -> DatabaseStatus:
        return cls(
            position=str(summary.position),
            schema_version=summary.schema_version,
            outcomes=dict(summary.outcomes),
            via=via,
            pending=summary.pending,
            in_dlq=summary.in_dlq,
            blocked_by=summary.blocked_by,
            failures=list(summary.failures),
        )

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {
            "position": self.position,
            "schema_version": self.schema_version,
            "outcomes": dict(self.outcomes),
            "pending": self.pending,
            "in_dlq": self.in_dlq,
            "blocked_by": None if self.blocked_by is None else self.blocked_by.to_json(),
            "failures": [status.to_json() for status in self.failures],
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
    """The ledger's summary straight from a local file (read-only).

    Raises the engine's error if the file is not a database.
    """
    from efsqlite.core.connections import open_readonly_connection

    conn = open_readonly_connection(path)
    try:
        conn.execute("BEGIN")
        try:
            return DatabaseStatus.from_summary(ledger_summary(conn), "file")
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


def database_status(reader: ReadClient, db: str, local_file: Path | None = None) -> DatabaseStatus:
    """One database's status, read fresh through the reader (its ``database_status``
    request), else from ``local_file`` if the reader cannot answer and the file exists.

    Never raises for a refused or missing database: the reason is in ``error``.
    """
    try:
        return DatabaseStatus.from_summary(reader.database_status(db), "reader")
    except (ReadRequestError, ReaderInvokeError) as exc:
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
            if queue is not None and queue.visible + queue.held == 0:
                # Nothing is queued or in flight: no message waits behind the failure (its
                # own message was deleted or expired), so the group is not blocked.
                found[db] = replace(found[db], blocked_by=None)
        reader_version = reader_sqlite_version(reader, names[0])
    return StatusReport(
        queue=queue,
        dlq=dlq,
        databases=found,
        sqlite=SqliteVersions(local=engine.sqlite_version(), reader=reader_version),
        dlq_url=endpoints.dlq_url,
    )
