"""The writer's per-environment state: one connection per database, migrated on first use.

The Lambda handler (``functions/writer/app.py``) is a thin shell around :class:`Writer`; the
local stack calls that same handler, and tests may call :class:`Writer` directly.

DO keep one :class:`Writer` per execution environment (module scope in the handler).
DON'T share a database between writers outside the FIFO group: SQS hands a group to one
invocation at a time, and that is the only mutual exclusion that is cheap on EFS.
DO create a new database under a staging name and move it into place once migrated: a reader
then finds it whole (ledger and schema) or not at all, never an empty or half-migrated file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efsqlite.apply import Applier, BatchResult, IncomingRecord
from efsqlite.commands import CommandRegistry, load_registry
from efsqlite.connections import database_path, open_writer_connection
from efsqlite.exceptions import EfsqliteError
from efsqlite.ledger import encode_position
from efsqlite.migrations import Migration, discover, migrate
from efsqlite.names import check_db_name
from efsqlite.settings import WriterSettings

#: Ledger pruning runs inside a normal batch transaction at most this often per database.
PRUNE_INTERVAL_S = 3600.0
#: A new database is built as ``<db>.sqlite.new`` and renamed to ``<db>.sqlite`` once migrated.
STAGING_SUFFIX = ".new"
_DAY_MS = 86_400_000


@dataclass(slots=True)
class _OpenDatabase:
    connection: sqlite3.Connection
    last_prune: float = 0.0


@dataclass(slots=True)
class EventResult:
    """What one SQS event produced: per-group results plus records that never reached one."""

    batches: list[BatchResult] = field(default_factory=list)
    unroutable: list[tuple[str, str]] = field(default_factory=list)  # (message id, reason)

    def failed_message_ids(self) -> list[str]:
        failed = [message_id for message_id, _ in self.unroutable]
        for batch in self.batches:
            failed.extend(batch.failed)
        return failed

    def response(self) -> dict[str, list[dict[str, str]]]:
        """The ``ReportBatchItemFailures`` response Lambda expects."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids()]}


def record_from_event(raw: Mapping[str, Any]) -> IncomingRecord:
    """Reduce one Lambda SQS record to an :class:`IncomingRecord`.

    Raises ``KeyError``/``TypeError``/``ValueError`` for a record that is not a FIFO record
    (no ``SequenceNumber``: the queue is not FIFO) or whose group is not a database name.
    """
    attributes = raw["attributes"]
    sequence_number = str(attributes["SequenceNumber"])
    encode_position(sequence_number)  # refuse a malformed sequence number up front
    return IncomingRecord(
        message_id=str(raw["messageId"]),
        body=str(raw["body"]),
        sequence_number=sequence_number,
        group_id=check_db_name(str(attributes["MessageGroupId"])),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
    )


class Writer:
    """Applies SQS FIFO events. One instance per execution environment."""

    def __init__(
        self, settings: WriterSettings, *, registry: CommandRegistry | None = None
    ) -> None:
        self.settings = settings
        self.applier = Applier(
            registry if registry is not None else load_registry(settings.commands),
            allow_raw_statements=settings.allow_raw_statements,
        )
        self._databases: dict[str, _OpenDatabase] = {}
        self._migrations: dict[str, list[Migration]] = {}

    def database(self, db: str) -> _OpenDatabase:
        """The open, migrated connection for ``db`` (opened and migrated on first use)."""
        opened = self._databases.get(db)
        if opened is None:
            migrations = self._migrations.get(db)
            if migrations is None:
                migrations = discover(self.settings.migrations_dir, db)
                self._migrations[db] = migrations
            path = database_path(self.settings.data_dir, db)
            if not path.exists():
                self._create(path, migrations)
            opened = _OpenDatabase(self._open_migrated(path, migrations))
            self._databases[db] = opened
        return opened

    def _open_migrated(self, path: Path, migrations: list[Migration]) -> sqlite3.Connection:
        conn = open_writer_connection(
            path,
            journal_mode=self.settings.journal_mode,
            busy_timeout_ms=self.settings.busy_timeout_ms,
        )
        try:
            migrate(conn, migrations)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create(self, path: Path, migrations: list[Migration]) -> None:
        """Build a new database under a staging name, migrate it, then move it into place.

        Readers look only at ``<db>.sqlite``, so they answer "database not found" until the
        file appears with its ledger and every migration. A staging file left by a crash holds
        no commands (only migrations ran in it) and is rebuilt from scratch.
        """
        staging = path.with_name(path.name + STAGING_SUFFIX)
        for leftover in (staging, staging.with_name(staging.name + "-journal")):
            leftover.unlink(missing_ok=True)
        self._open_migrated(staging, migrations).close()
        # No connection is open on either name, so the rename cannot pull a file from under
        # SQLite; the directory fsync makes the new name durable before any command commits.
        os.rename(staging, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def apply_records(self, db: str, records: Sequence[IncomingRecord]) -> BatchResult:
        """Apply one group's records; a database that cannot open fails them all."""
        try:
            opened = self.database(db)
        except (EfsqliteError, sqlite3.Error, OSError) as exc:
            self.forget(db)
            return BatchResult(
                db=db,
                failed=[r.message_id for r in records],
                failure_type=type(exc).__name__,
                failure_message=str(exc),
            )
        now = time.time()
        prune_before_ms = None
        if now - opened.last_prune >= PRUNE_INTERVAL_S:
            prune_before_ms = int(now * 1000) - self.settings.ledger_retention_days * _DAY_MS
        result = self.applier.apply(opened.connection, db, records, prune_before_ms=prune_before_ms)
        if prune_before_ms is not None and result.failure_type is None:
            opened.last_prune = now
        if result.failure_type is not None and not result.settled:
            # A failed commit may leave the handle in a bad state (I/O error, disk full):
            # reopen on the next batch rather than trust it.
            self.forget(db)
        return result

    def handle_event(self, event: Mapping[str, Any]) -> EventResult:
        """Apply a Lambda SQS event: records grouped by ``MessageGroupId``, order kept."""
        outcome = EventResult()
        groups: dict[str, list[IncomingRecord]] = {}
        for raw in event.get("Records") or []:
            message_id = str(raw.get("messageId", "")) if isinstance(raw, Mapping) else ""
            try:
                record = record_from_event(raw)
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                outcome.unroutable.append((message_id, reason))
                continue
            groups.setdefault(record.group_id, []).append(record)
        for db, records in groups.items():
            outcome.batches.append(self.apply_records(db, records))
        return outcome

    def forget(self, db: str) -> None:
        opened = self._databases.pop(db, None)
        if opened is not None:
            opened.connection.close()

    def close(self) -> None:
        for db in list(self._databases):
            self.forget(db)
