"""The stateless command applier: SQS-shaped records in, one transaction and outcomes out.

The writer Lambda, the local stack, the tests and the benchmarks all call :class:`Applier`, so
there is one implementation of the rules in docs/architecture.md ("Outcomes"):

- **applied**: the command's statements ran; its ledger row commits with them.
- **rejected**: the database or the registry said no (constraint, bad SQL, bad args, unknown
  command, a refused action). Recorded and acknowledged, so the FIFO group moves on.
- **failed**: the system could not decide (I/O error, lock timeout, schema not migrated yet, a
  bug in a handler). The record and every later record of its group are handed back for SQS
  to redeliver; earlier records commit.

A batch for one database is one ``BEGIN IMMEDIATE`` transaction with a savepoint per command:
one commit (a handful of fsyncs) for the whole batch, however many commands it packs.

DO apply a group's records in the order SQS delivered them. DON'T acknowledge a record whose
transaction did not commit.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from efsqlite import ledger
from efsqlite.commands import CommandContext, CommandRegistry
from efsqlite.exceptions import CommandRejectedError, EfsqliteError
from efsqlite.ledger import LedgerEntry
from efsqlite.models import (
    MAX_ID_LENGTH,
    AnyCommand,
    NamedCommand,
    StatementsCommand,
    parse_message,
)
from efsqlite.types import Outcome

#: Transient codes after which SQLite may have rolled the transaction back on its own: the
#: whole batch is abandoned rather than committing on top of an uncertain state.
_BATCH_FATAL_CODES = {
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOTADB,
}
#: Primary SQLite result codes that mean "the system could not decide": retry later.
_TRANSIENT_CODES = _BATCH_FATAL_CODES | {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_INTERRUPT,
}
_MAX_RESTARTS = 16

_DENIED_ACTIONS = {
    sqlite3.SQLITE_CREATE_INDEX,
    sqlite3.SQLITE_CREATE_TABLE,
    sqlite3.SQLITE_CREATE_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_TABLE,
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
    sqlite3.SQLITE_CREATE_TEMP_VIEW,
    sqlite3.SQLITE_CREATE_TRIGGER,
    sqlite3.SQLITE_CREATE_VIEW,
    sqlite3.SQLITE_CREATE_VTABLE,
    sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_TRIGGER,
    sqlite3.SQLITE_DROP_TEMP_VIEW,
    sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_VIEW,
    sqlite3.SQLITE_DROP_VTABLE,
    sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_ANALYZE,
    sqlite3.SQLITE_REINDEX,
    sqlite3.SQLITE_ATTACH,
    sqlite3.SQLITE_DETACH,
    sqlite3.SQLITE_PRAGMA,
    sqlite3.SQLITE_TRANSACTION,
}
_WRITE_ACTIONS = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """One SQS FIFO record, reduced to what applying it needs."""

    message_id: str
    body: str
    sequence_number: str
    group_id: str
    receive_count: int = 1


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command this batch settled as rejected, and why."""

    id: str
    error_type: str
    error_message: str


@dataclass(slots=True)
class BatchResult:
    """The result of applying one group's records; ``failed`` goes to ``batchItemFailures``."""

    db: str
    settled: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Counts rather than one object per command: packed batches settle thousands.
    applied: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    failure_type: str | None = None
    failure_message: str | None = None
    position: str | None = None
    commit_ms: float = 0.0


class _CommandFailedError(EfsqliteError):
    """A command failed; ``batch_fatal`` means nothing in this transaction may commit."""

    def __init__(
        self, error_type: str, message: str, *, batch_fatal: bool, command_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.batch_fatal = batch_fatal
        self.command_id = command_id


class _TransactionLostError(EfsqliteError):
    """A command's own SQL ended the transaction (``ON CONFLICT ROLLBACK``, ``RAISE(ROLLBACK)``)."""

    def __init__(self, command_id: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.command_id = command_id
        self.error_type = error_type


@dataclass(slots=True)
class _BatchState:
    """What one transaction attempt accumulates while it walks the records."""

    db: str
    schema_version: int
    known: dict[str, Outcome]
    forced: dict[str, _Rejection]
    result: BatchResult
    entries: list[LedgerEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Rejection:
    error_type: str
    message: str


def classify_sqlite_error(exc: sqlite3.Error) -> tuple[str, bool]:
    """Return (error type, transient?) for an error raised while running a command."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    if code is None:
        return ("InvalidStatement", False)
    if code & 0xFF in _TRANSIENT_CODES:
        return (str(name or "SQLiteError"), True)
    if code & 0xFF == sqlite3.SQLITE_AUTH:
        return ("NotAllowed", False)
    if code & 0xFF == sqlite3.SQLITE_CONSTRAINT:
        return ("ConstraintViolation", False)
    return ("SQLError", False)


class Applier:
    """Applies records to an open writer connection. Holds configuration, never record state."""

    def __init__(
        self,
        registry: CommandRegistry | None = None,
        *,
        allow_raw_statements: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CommandRegistry()
        self.allow_raw_statements = allow_raw_statements
        self.clock = clock
        # Unguessable, so a command's own SAVEPOINT/RELEASE can be told apart from ours.
        self._savepoint = f"efsqlite_{secrets.token_hex(8)}"

    # -- the command-phase authorizer -------------------------------------------------------
    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action == sqlite3.SQLITE_SAVEPOINT:
            return sqlite3.SQLITE_OK if arg2 == self._savepoint else sqlite3.SQLITE_DENY
        if action in _DENIED_ACTIONS:
            return sqlite3.SQLITE_DENY
        if action in _WRITE_ACTIONS and arg1 is not None:
            if arg1.startswith(ledger.INTERNAL_PREFIX):
                return sqlite3.SQLITE_DENY
        elif action == sqlite3.SQLITE_FUNCTION and arg2 == "load_extension":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    # -- public entry point -----------------------------------------------------------------
    def apply(
        self,
        conn: sqlite3.Connection,
        db: str,
        records: Sequence[IncomingRecord],
        *,
        prune_before_ms: int | None = None,
    ) -> BatchResult:
        """Apply ``records`` (one FIFO group, in order) to database ``db`` in one transaction."""
        forced: dict[str, _Rejection] = {}
        for _ in range(_MAX_RESTARTS):
            try:
                return self._apply_once(conn, db, records, forced, prune_before_ms)
            except _TransactionLostError as lost:
                # The command's SQL rolled back the whole transaction. Nothing committed:
                # run the batch again with that command settled as rejected.
                forced[lost.command_id] = _Rejection(lost.error_type, str(lost))
        return _all_failed(
            db, records, "TooManyRestarts", "commands kept rolling back the batch transaction"
        )

    def _apply_once(
        self,
        conn: sqlite3.Connection,
        db: str,
        records: Sequence[IncomingRecord],
        forced: dict[str, _Rejection],
        prune_before_ms: int | None,
    ) -> BatchResult:
        result = BatchResult(db=db)
        parsed = [self._parse(record, db) for record in records]
        now_ms = int(self.clock() * 1000)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error_type, _ = classify_sqlite_error(exc)
            return _all_failed(db, records, error_type, str(exc))
        try:
            ids = [c.id for commands in parsed if isinstance(commands, list) for c in commands]
            ids += [r.id for r in parsed if isinstance(r, _BadBody)]
            state = _BatchState(
                db=db,
                schema_version=ledger.schema_version(conn),
                known=ledger.settled_outcomes(conn, ids),
                forced=forced,
                result=result,
            )
            had_failures = ledger.has_failures(conn)
            settled_positions: list[str] = []
            failure: tuple[int, str, str, str | None] | None = None  # index, type, msg, id
            conn.set_authorizer(self._authorize)
            try:
                for index, (record, item) in enumerate(zip(records, parsed, strict=True)):
                    position = ledger.encode_position(record.sequence_number)
                    if isinstance(item, _BadBody):
                        self._settle_bad_body(record, item, state)
                        settled_positions.append(position)
                        result.settled.append(record.message_id)
                        continue
                    try:
                        if len(item) == 1 or not self._apply_packed_fast(conn, item, record, state):
                            for command in item:
                                self._apply_command(conn, command, record, state)
                    except _CommandFailedError as exc:
                        if exc.batch_fatal:
                            raise
                        failure = (index, exc.error_type, str(exc), exc.command_id)
                        break
                    settled_positions.append(position)
                    result.settled.append(record.message_id)
            finally:
                conn.set_authorizer(None)
            if failure is not None:
                index, error_type, message, failed_id = failure
                result.failed = [r.message_id for r in records[index:]]
                result.failure_type, result.failure_message = error_type, message
                if failed_id is not None:
                    ledger.record_failure(
                        conn,
                        failed_id,
                        message_id=records[index].message_id,
                        error_type=error_type,
                        error_message=message,
                        at_ms=now_ms,
                    )
            ledger.record_outcomes(conn, state.entries, settled_at_ms=now_ms)
            if had_failures and state.entries:
                ledger.clear_failures(conn, [e.id for e in state.entries])
            if settled_positions:
                top = max(settled_positions)
                ledger.advance_position(conn, top)
                result.position = ledger.decode_position(top)
            if prune_before_ms is not None:
                ledger.prune(conn, prune_before_ms)
            started = time.perf_counter()
            conn.execute("COMMIT")
            result.commit_ms = (time.perf_counter() - started) * 1000
            return result
        except _TransactionLostError:
            _rollback_quietly(conn)
            raise
        except _CommandFailedError as exc:
            _rollback_quietly(conn)
            return _all_failed(db, records, exc.error_type, str(exc))
        except sqlite3.Error as exc:
            _rollback_quietly(conn)
            error_type, _ = classify_sqlite_error(exc)
            return _all_failed(db, records, error_type, str(exc))
        except BaseException:
            _rollback_quietly(conn)
            raise

    # -- pieces -----------------------------------------------------------------------------
    def _parse(self, record: IncomingRecord, db: str) -> list[AnyCommand] | _BadBody:
        try:
            commands = parse_message(record.body)
        except ValidationError as exc:
            return _BadBody.from_validation(record, exc)
        if commands and commands[0].db != db:
            return _BadBody(
                id=_id_from_body(record),
                error_type="WrongMessageGroup",
                message=(
                    f"message group {db!r} does not match the body's db {commands[0].db!r}; "
                    "send with MessageGroupId equal to db"
                ),
            )
        return commands

    def _settle_bad_body(
        self,
        record: IncomingRecord,
        bad: _BadBody,
        state: _BatchState,
    ) -> None:
        if bad.id in state.known:
            state.result.duplicates += 1
            return
        state.known[bad.id] = "rejected"
        state.entries.append(
            LedgerEntry(
                id=bad.id,
                outcome="rejected",
                position=record.sequence_number,
                message_id=record.message_id,
                error_type=bad.error_type,
                error_message=ledger.excerpt(bad.message),
                body_excerpt=ledger.excerpt(record.body),
            )
        )
        state.result.rejections.append(Rejection(bad.id, bad.error_type, bad.message))

    def _apply_packed_fast(
        self,
        conn: sqlite3.Connection,
        commands: list[AnyCommand],
        record: IncomingRecord,
        state: _BatchState,
    ) -> bool:
        """Run a packed message's commands under one savepoint; False means "redo one by one".

        Two statements per command (SAVEPOINT/RELEASE) cost as much as the command itself, and
        rejections are rare. So the commands run together; if any of them is rejected or
        fails, the whole message is rolled back to its savepoint and the caller replays it
        with a savepoint per command, which gives each command its own outcome. Either way
        every command is applied atomically or not at all.
        """
        entries_mark, duplicates_mark = len(state.entries), state.result.duplicates
        added: list[str] = []
        current = commands[0]
        conn.execute(f"SAVEPOINT {self._savepoint}")
        try:
            for command in commands:
                current = command
                if command.id in state.known:
                    state.result.duplicates += 1
                    continue
                if command.id in state.forced or self._precheck(command, state.schema_version):
                    raise _RedoOneByOneError
                if isinstance(command, StatementsCommand):
                    for statement in command.statements:
                        conn.execute(statement.sql, statement.params).fetchall()
                else:
                    self._run_named(conn, state.db, command, state.schema_version)
                state.known[command.id] = "applied"
                added.append(command.id)
                state.entries.append(
                    LedgerEntry(command.id, "applied", record.sequence_number, record.message_id)
                )
        except Exception as exc:
            if not conn.in_transaction:
                # The command's own SQL ended the transaction: restart the batch with it
                # rejected (or, for I/O-class errors, fail the batch).
                raise _fast_path_lost(current.id, exc) from exc
            conn.execute(f"ROLLBACK TO {self._savepoint}")
            conn.execute(f"RELEASE {self._savepoint}")
            for command_id in added:
                del state.known[command_id]
            del state.entries[entries_mark:]
            state.result.duplicates = duplicates_mark
            return False
        conn.execute(f"RELEASE {self._savepoint}")
        state.result.applied += len(added)
        return True

    def _apply_command(
        self,
        conn: sqlite3.Connection,
        command: AnyCommand,
        record: IncomingRecord,
        state: _BatchState,
    ) -> None:
        result = state.result
        if command.id in state.known:
            result.duplicates += 1
            return
        rejection = state.forced.get(command.id) or self._precheck(command, state.schema_version)
        if rejection is None:
            rejection = self._run(conn, state.db, command, state.schema_version)
        if rejection is None:
            entry = LedgerEntry(command.id, "applied", record.sequence_number, record.message_id)
            result.applied += 1
        else:
            entry = LedgerEntry(
                command.id,
                "rejected",
                record.sequence_number,
                record.message_id,
                rejection.error_type,
                ledger.excerpt(rejection.message),
            )
            result.rejections.append(Rejection(command.id, rejection.error_type, rejection.message))
        state.known[command.id] = entry.outcome
        state.entries.append(entry)

    def _precheck(self, command: AnyCommand, version: int) -> _Rejection | None:
        if command.expect_schema is not None and command.expect_schema > version:
            raise _CommandFailedError(
                "SchemaNotReady",
                f"command {command.id!r} expects schema version {command.expect_schema} but the "
                f"database is at {version}; it is retried until migrations catch up",
                batch_fatal=False,
                command_id=command.id,
            )
        if isinstance(command, StatementsCommand) and not self.allow_raw_statements:
            return _Rejection("NotAllowed", "raw statements are turned off; use a named command")
        return None

    def _run(
        self, conn: sqlite3.Connection, db: str, command: AnyCommand, version: int
    ) -> _Rejection | None:
        savepoint = self._savepoint
        conn.execute(f"SAVEPOINT {savepoint}")
        try:
            if isinstance(command, StatementsCommand):
                for statement in command.statements:
                    conn.execute(statement.sql, statement.params).fetchall()
            else:
                self._run_named(conn, db, command, version)
        except _CommandRejectedSignalError as exc:
            return self._undo(conn, command.id, exc.rejection)
        except CommandRejectedError as exc:
            return self._undo(conn, command.id, _Rejection(exc.error_type, str(exc)))
        except sqlite3.Error as exc:
            error_type, transient = classify_sqlite_error(exc)
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if transient:
                if code in _BATCH_FATAL_CODES or not conn.in_transaction:
                    raise _CommandFailedError(error_type, str(exc), batch_fatal=True) from exc
                self._undo(conn, command.id, None)
                raise _failed_for(command.id, error_type, str(exc)) from exc
            return self._undo(conn, command.id, _Rejection(error_type, str(exc)))
        except (OverflowError, ValueError, TypeError) as exc:
            if isinstance(command, StatementsCommand):
                return self._undo(conn, command.id, _Rejection("InvalidParams", str(exc)))
            self._undo(conn, command.id, None)
            raise _failed_for(command.id, "HandlerError", repr(exc)) from exc
        except Exception as exc:
            # A bug in a named command's handler: the system cannot decide, so retry / DLQ.
            if not conn.in_transaction:
                raise _CommandFailedError("HandlerError", repr(exc), batch_fatal=True) from exc
            self._undo(conn, command.id, None)
            raise _failed_for(command.id, "HandlerError", repr(exc)) from exc
        conn.execute(f"RELEASE {savepoint}")
        return None

    def _run_named(
        self, conn: sqlite3.Connection, db: str, command: NamedCommand, version: int
    ) -> None:
        spec = self.registry.get(command.command)
        if spec is None:
            raise _CommandRejectedSignalError(
                _Rejection("UnknownCommand", f"no named command {command.command!r} is registered")
            )
        try:
            args = spec.args_model.model_validate(command.args)
        except ValidationError as exc:
            raise _CommandRejectedSignalError(
                _Rejection("InvalidArgs", f"{command.command}: {_summarize(exc)}")
            ) from None
        spec.handler(CommandContext(conn, db, command.id, version), args)

    def _undo(
        self, conn: sqlite3.Connection, command_id: str, rejection: _Rejection | None
    ) -> _Rejection | None:
        if not conn.in_transaction:
            assert rejection is not None
            raise _TransactionLostError(command_id, rejection.error_type, rejection.message)
        conn.execute(f"ROLLBACK TO {self._savepoint}")
        conn.execute(f"RELEASE {self._savepoint}")
        return rejection


class _RedoOneByOneError(EfsqliteError):
    """Leave the packed fast path and replay the message one command at a time."""


def _fast_path_lost(culprit: str, exc: Exception) -> _TransactionLostError | _CommandFailedError:
    """Classify an error that ended the transaction while on the packed fast path."""
    if isinstance(exc, sqlite3.Error):
        error_type, transient = classify_sqlite_error(exc)
        if not transient:
            return _TransactionLostError(culprit, error_type, str(exc))
        return _CommandFailedError(error_type, str(exc), batch_fatal=True)
    return _CommandFailedError("HandlerError", repr(exc), batch_fatal=True)


class _CommandRejectedSignalError(EfsqliteError):
    def __init__(self, rejection: _Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class _BadBody:
    """A body that is not a valid v1 message: rejected under its id, or its message id."""

    id: str
    error_type: str
    message: str

    @classmethod
    def from_validation(cls, record: IncomingRecord, exc: ValidationError) -> _BadBody:
        is_json = not any(e["type"] == "json_invalid" for e in exc.errors())
        return cls(
            id=_id_from_body(record) if is_json else f"message:{record.message_id}",
            error_type="InvalidMessage" if is_json else "UnparseableBody",
            message=_summarize(exc),
        )


def _id_from_body(record: IncomingRecord) -> str:
    """The command id a bad body claims, so ``command_status(id)`` finds the rejection."""
    try:
        value = json.loads(record.body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        candidate = value.get("id")
        if isinstance(candidate, str) and 0 < len(candidate) <= MAX_ID_LENGTH:
            return candidate
    return f"message:{record.message_id}"


def _summarize(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _failed_for(command_id: str, error_type: str, message: str) -> _CommandFailedError:
    return _CommandFailedError(error_type, message, batch_fatal=False, command_id=command_id)


def _all_failed(
    db: str, records: Sequence[IncomingRecord], error_type: str, message: str
) -> BatchResult:
    return BatchResult(
        db=db,
        failed=[r.message_id for r in records],
        failure_type=error_type,
        failure_message=message,
    )


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.set_authorizer(None)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
