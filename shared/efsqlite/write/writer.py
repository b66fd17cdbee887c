"""The writer's per-environment state: a bounded set of open databases, migrated on first use.

The Lambda handler (``functions/writer/app.py``) is a thin shell around :class:`Writer`; the
local stack calls that same handler, and tests may call :class:`Writer` directly.

DO keep one :class:`Writer` per execution environment (module scope in the handler).
DO keep at most ``max_open_databases`` connections open (``EFSQLITE_MAX_OPEN_DATABASES``,
default 64): Lambda allows 1,024 file descriptors and each connection holds one. Past the
cap the least recently used database is closed before another opens (so the count never
exceeds it, not even while a new database is built); it is reopened, its migrations
checked and its ledger pruned, on its next batch.
DON'T close the database of the batch being applied: eviction happens only when a batch
starts, before its own database opens.
DON'T share a database between writers outside the FIFO group: SQS hands a group to one
invocation at a time, and that is the only mutual exclusion that is cheap on EFS.
DO create a new database under a staging name and move it into place once migrated: a reader
then finds it whole (ledger and schema) or not at all, never an empty or half-migrated file.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from efsqlite.core import engine
from efsqlite.core.connections import database_path, open_writer_connection, set_hard_heap_limit
from efsqlite.core.exceptions import EfsqliteError, ErrorType, InvalidDatabaseNameError
from efsqlite.core.ledger import FAILURES_TABLE, excerpt, has_table, record_failure
from efsqlite.core.names import DB_NAME_PATTERN, check_db_name
from efsqlite.core.pagelog import sidecar_path
from efsqlite.core.position import InvalidPositionError, Position
from efsqlite.core.sqlpolicy import is_text
from efsqlite.write.apply import Applier, BatchResult, IncomingRecord, claimed_command_id
from efsqlite.write.commands import CommandRegistry, load_commands
from efsqlite.write.exceptions import MigrationError, UnknownDatabaseError
from efsqlite.write.migrations import Migration, discover, migrate
from efsqlite.write.settings import WriterSettings
from efsqlite.write.wire import body_text

#: Time kept back from the invocation's remaining time to write the ledger, commit and answer:
#: no command starts later than this before Lambda's timeout.
DEADLINE_MARGIN_S = 1.0
#: Ledger pruning runs inside a normal batch transaction at most this often per database.
PRUNE_INTERVAL_S = 3600.0
#: A new database is built as ``<db>.sqlite.new`` and renamed to ``<db>.sqlite`` once migrated.
STAGING_SUFFIX = ".new"
_DAY_MS = 86_400_000


@dataclass(slots=True)
class _OpenDatabase:
    connection: engine.Connection
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


class UnroutableRecordError(EfsqliteError, ValueError):
    """A record that cannot be handed to a database: not shaped as Lambda's SQS FIFO sends it.

    ``message_id`` names it in ``batchItemFailures`` (``""`` when it has no usable one);
    ``group`` is its ``MessageGroupId`` when that is a string, else ``None``, so the records
    after it in its group (or, with ``None``, all of them) can be held back in FIFO order.
    """

    def __init__(self, reason: str, *, message_id: str = "", group: str | None = None) -> None:
        super().__init__(reason)
        self.message_id = message_id
        self.group = group


def _shown(value: object) -> str:
    """A short, printable, never-raising description of an untrusted value (for reasons)."""
    if isinstance(value, str):
        return ascii(value[:64]) + ("..." if len(value) > 64 else "")
    return f"a {type(value).__name__}"


def record_from_event(raw: object) -> IncomingRecord:
    """Reduce one Lambda SQS record to an :class:`IncomingRecord`.

    Raises :class:`UnroutableRecordError` (and nothing else) for what Lambda's SQS FIFO event
    source never sends: a record that is not an object; a ``messageId`` that is not a
    non-empty string of Unicode text; ``attributes`` that are not an object; no
    ``SequenceNumber`` (the queue is not FIFO) or one that is not 1 to 40 ASCII digits; a
    ``MessageGroupId`` that is not a database name; an ``ApproximateReceiveCount`` that is
    there but not ASCII digits; a ``body`` that is not a string (bytes are read as UTF-8).
    A body that is not Unicode text is *not* unroutable: :func:`efsqlite.write.wire.body_text`
    makes it storable, and the parser then rejects it under its own id.
    """
    if not isinstance(raw, Mapping):
        raise UnroutableRecordError(f"a record must be an object, not {_shown(raw)}")
    attributes = raw.get("attributes")
    group = attributes.get("MessageGroupId") if isinstance(attributes, Mapping) else None
    group_key = group if isinstance(group, str) else None
    raw_id = raw.get("messageId")
    message_id = raw_id if isinstance(raw_id, str) and raw_id and is_text(raw_id) else ""

    def refuse(reason: str) -> UnroutableRecordError:
        return UnroutableRecordError(reason, message_id=message_id, group=group_key)

    if not message_id:
        raise refuse(f"messageId must be a non-empty string of Unicode text, not {_shown(raw_id)}")
    if not isinstance(attributes, Mapping):
        raise refuse(f"attributes must be an object, not {_shown(attributes)}")
    sequence_number = attributes.get("SequenceNumber")
    if not isinstance(sequence_number, str):
        raise refuse(
            f"SequenceNumber must be a string of digits, not {_shown(sequence_number)}"
            " (a record without one does not come from a FIFO queue)"
        )
    try:
        Position.parse(sequence_number)
    except InvalidPositionError as exc:
        raise refuse(str(exc)) from None
    try:
        if group_key is None:
            raise InvalidDatabaseNameError("not a string")
        check_db_name(group_key)
    except InvalidDatabaseNameError:
        raise refuse(
            f"MessageGroupId {_shown(group)} is not a database name: it must match "
            f"{DB_NAME_PATTERN} (send with MessageGroupId equal to db)"
        ) from None
    count = attributes.get("ApproximateReceiveCount", "1")
    if not (isinstance(count, str) and count.isascii() and count.isdigit() and len(count) <= 10):
        raise refuse(f"ApproximateReceiveCount must be a string of digits, not {_shown(count)}")
    body = raw.get("body")
    if not isinstance(body, str | bytes):
        raise refuse(f"body must be a string, not {_shown(body)}")
    return IncomingRecord(
        message_id=message_id,
        body=body_text(body),
        sequence_number=sequence_number,
        group_id=group_key,
        receive_count=int(count),
    )


def invocation_deadline(context: object, *, margin_s: float = DEADLINE_MARGIN_S) -> float:
    """The ``time.monotonic()`` by which the batch must stop, from a Lambda context.

    No context (a test, a benchmark) or one without ``get_remaining_time_in_millis`` means no
    deadline.
    """
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return math.inf
    try:
        left_s = float(remaining()) / 1000
    except Exception:
        return math.inf
    if not math.isfinite(left_s):
        return math.inf
    return time.monotonic() + max(left_s - margin_s, 0.0)


class Writer:
    """Applies SQS FIFO events. One instance per execution environment."""

    def __init__(
        self, settings: WriterSettings, *, registry: CommandRegistry | None = None
    ) -> None:
        self.settings = settings
        self.applier = Applier(
            registry if registry is not None else load_commands(settings.commands),
            allow_raw_statements=settings.allow_raw_statements,
            step_budget=settings.command_step_budget,
            extra_functions=settings.extra_function_names(),
            max_receive_count=settings.max_receive_count,
        )
        set_hard_heap_limit(settings.heap_limit_bytes())
        self._databases: dict[str, _OpenDatabase] = {}
        self._migrations: dict[str, list[Migration]] = {}

    def database(self, db: str) -> _OpenDatabase:
        """The open, migrated connection for ``db`` (opened and migrated on first use).

        ``self._databases`` is kept in recency order (the last used last); opening one more
        than ``max_open_databases`` first closes the least recently used.
        """
        opened = self._databases.pop(db, None)
        if opened is None:
            migrations = self._migrations.get(db)
            if migrations is None:
                migrations = discover(self.settings.migrations_dir, db)
                self._migrations[db] = migrations
            path = database_path(self.settings.data_dir, db)
            exists = path.exists()
            if not exists and not self.settings.may_create(db):
                raise UnknownDatabaseError(
                    f"database {db!r} does not exist and the deployment does not declare "
                    f"it (EFSQLITE_DATABASES={self.settings.databases or ''!r}), so no file "
                    "was created: check the command's db for a typo, or declare it and "
                    "redrive the DLQ"
                )
            self._make_room()
            if not exists:
                self._create(path, migrations)
            opened = _OpenDatabase(self._open_migrated(path, migrations))
        self._databases[db] = opened  # (re)inserted last: dict order is recency
        return opened

    def open_databases(self) -> list[str]:
        """The databases with an open connection, least recently used first."""
        return list(self._databases)

    def _make_room(self) -> None:
        """Close least recently used databases until one more may open within the cap."""
        while len(self._databases) >= self.settings.max_open_databases:
            self.forget(next(iter(self._databases)))

    def _open_migrated(self, path: Path, migrations: list[Migration]) -> engine.Connection:
        conn = open_writer_connection(
            path,
            journal_mode=self.settings.journal_mode,
            busy_timeout_ms=self.settings.busy_timeout_ms,
            max_value_bytes=self.settings.max_value_bytes,
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
        # A page log left by an earlier file of this name describes another history.
        for leftover in (staging, staging.with_name(staging.name + "-journal"), sidecar_path(path)):
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

    def apply_records(
        self, db: str, records: Sequence[IncomingRecord], *, deadline: float = math.inf
    ) -> BatchResult:
        """Apply one group's records; a database that cannot open fails them all.

        ``deadline`` (``time.monotonic()``): see :meth:`Applier.apply`.
        """
        try:
            opened = self.database(db)
        except (EfsqliteError, engine.Error, OSError) as exc:
            self.forget(db)
            failure_type = getattr(exc, "error_type", None) or type(exc).__name__
            if isinstance(exc, MigrationError) and records:
                self._record_open_failure(db, records[0], failure_type, str(exc))
            return BatchResult(
                db=db,
                failed=[r.message_id for r in records],
                failure_type=failure_type,
                failure_message=str(exc),
            )
        now = time.time()
        prune_before_ms = None
        if now - opened.last_prune >= PRUNE_INTERVAL_S:
            prune_before_ms = int(now * 1000) - self.settings.ledger_retention_days * _DAY_MS
        result = self.applier.apply(
            opened.connection, db, records, prune_before_ms=prune_before_ms, deadline=deadline
        )
        if prune_before_ms is not None and result.failure_type is None:
            opened.last_prune = now
        if result.failure_type is not None and not result.settled:
            # A failed commit may leave the handle in a bad state (I/O error, disk full):
            # reopen on the next batch rather than trust it.
            self.forget(db)
        return result

    def _record_open_failure(
        self, db: str, head: IncomingRecord, failure_type: str, message: str
    ) -> None:
        """Record why ``db`` cannot be opened against the group's head command, best effort.

        Its migrations failed, so no batch reaches the ledger; without this row the cause of
        a blocked group would be only in the writer's log. It goes in on its own small
        transaction (no migration runs); any error here is ignored: the batch fails anyway.
        """
        path = database_path(self.settings.data_dir, db)
        if not path.is_file():
            return
        try:
            conn = open_writer_connection(
                path,
                journal_mode=self.settings.journal_mode,
                busy_timeout_ms=self.settings.busy_timeout_ms,
            )
        except (engine.Error, OSError):
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if has_table(conn, FAILURES_TABLE):
                    record_failure(
                        conn,
                        claimed_command_id(head),
                        message_id=head.message_id,
                        error_type=failure_type,
                        error_message=message,
                        at_ms=int(time.time() * 1000),
                        receive_count=head.receive_count,
                        max_receives=self.settings.max_receive_count,
                    )
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except engine.Error:
            pass
        finally:
            conn.close()

    def handle_event(self, event: object, *, deadline: float = math.inf) -> EventResult:
        """Apply a Lambda SQS event: records grouped by ``MessageGroupId``, order kept.

        Never raises for any ``event``. A record :func:`record_from_event` refuses goes to
        ``unroutable`` (reported in ``batchItemFailures``, so SQS redelivers it and then moves
        it to the DLQ), and so does every later record of its group: FIFO order holds. If
        its group is unknown, every later record of the event is held back.

        A record without a usable ``messageId`` cannot be named, so it is reported as an
        empty ``itemIdentifier``. Lambda treats a partial batch response holding an empty,
        null or unknown ``itemIdentifier`` as a complete failure of the batch (AWS Lambda
        developer guide, "Handling errors for an SQS event source": success and failure
        conditions), so every message of it comes back and none is acknowledged unseen;
        the ledger makes the redelivered ones that did settle duplicates. The same goes for
        an event that is not an object holding a ``Records`` list: whatever messages it
        stood for are handed back. Lambda itself always sends ids and the list, so this only
        answers a forged or broken invocation.

        A bug while applying one group fails that group's records (type and traceback in
        the batch's ``failure_message``), not the other groups'.
        """
        outcome = EventResult()
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list | tuple):
            where = "Records" if isinstance(event, Mapping) else "the event"
            shown = records if isinstance(event, Mapping) else event
            outcome.unroutable.append(
                ("", f"{where} must be a list of SQS records, not {_shown(shown)}")
            )
            return outcome
        groups: dict[str, list[IncomingRecord]] = {}
        held_groups: dict[str, str] = {}  # group -> message id of the unroutable record
        held_all: str | None = None
        for raw in records:
            try:
                record = record_from_event(raw)
            except Exception as exc:
                if not isinstance(exc, UnroutableRecordError):  # a bug: hold everything after
                    exc = UnroutableRecordError(f"{type(exc).__name__}: {exc}")
                outcome.unroutable.append((exc.message_id, str(exc)))
                if exc.group is None:
                    held_all = held_all or exc.message_id or "a record without a messageId"
                else:
                    held_groups.setdefault(exc.group, exc.message_id or "a record without id")
                continue
            blocker = held_all or held_groups.get(record.group_id)
            if blocker is not None:
                outcome.unroutable.append(
                    (
                        record.message_id,
                        f"held back to keep FIFO order: {blocker} before it could not be routed",
                    )
                )
                continue
            groups.setdefault(record.group_id, []).append(record)
        for db, batch in groups.items():
            try:
                outcome.batches.append(self.apply_records(db, batch, deadline=deadline))
            except Exception as exc:
                # Whatever committed before the bug is a duplicate when SQS redelivers it.
                try:
                    self.forget(db)
                except Exception:
                    self._databases.pop(db, None)
                trace = "".join(traceback.format_exception(exc, limit=-4))
                outcome.batches.append(
                    BatchResult(
                        db=db,
                        failed=[r.message_id for r in batch],
                        failure_type=ErrorType.WRITER_ERROR,
                        failure_message=excerpt(trace, 2000),
                    )
                )
        return outcome

    def forget(self, db: str) -> None:
        opened = self._databases.pop(db, None)
        if opened is not None:
            opened.connection.close()

    def close(self) -> None:
        for db in list(self._databases):
            self.forget(db)
