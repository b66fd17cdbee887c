"""The stateless command applier: SQS-shaped records in, transactions and outcomes out.

The writer Lambda, the local stack, the tests and the benchmarks all call :class:`Applier`, so
there is one implementation of the rules in docs/architecture.md ("Outcomes"):

- **applied**: the command's statements ran; its ledger row commits with them.
- **rejected**: the database or the registry said no (constraint, bad SQL, bad args, unknown
  command, a refused action, a spent work budget). Recorded and acknowledged, so the FIFO
  group moves on. Every rejection is the same answer on every retry.
- **failed**: the system could not decide (I/O error, lock timeout, schema not migrated yet, a
  bug in a handler, the invocation running out of time). The record and every later record of
  its group are handed back for SQS to redeliver; earlier records commit.

A batch for one database is one ``BEGIN IMMEDIATE`` transaction with a savepoint per command:
one commit (a handful of fsyncs) for the whole batch, however many commands it packs.

Guards, so that no command can make the ledger lie, crash the writer or hold its group:

- **An allow-list authorizer** (:mod:`efsqlite.core.sqlpolicy`): commands may read the database's
  own tables, write its tables but not the ledger's or SQLite's, and call listed functions.
  Everything else is denied, transaction control under any name included; DDL is rejected
  ``NotAllowed`` with a message that sends the schema change to a migration. Our own
  ``SAVEPOINT``/``RELEASE`` run with the caller checks off, and caller SQL is prepared as
  ``caller_sql(text)``, so the savepoint's name is no secret: a command that names it, or
  sends the exact text of one of our statements, is still refused.
- **A work budget** in SQLite VM steps (progress handler): a command that spends it is
  rejected ``ResourceLimit``. Value sizes (``SQLITE_LIMIT_LENGTH``) and SQLite's heap are
  capped where the connection opens (``efsqlite.core.connections``, ``efsqlite.write.writer``).
- **The invocation's deadline**: no new command starts past it and a running one is
  interrupted; what settled commits and the rest is handed back as failed, so the writer is
  never killed mid-batch.
- **A lost transaction** (``INSERT OR ROLLBACK``, ``RAISE(ROLLBACK)``, an interrupted write:
  SQLite rolls back everything, not just the savepoint) is replayed from the last commit with
  the culprit rejected, and committed at once. So each command runs at most twice, however
  many of a batch's commands lose the transaction.

DO apply a group's records in the order SQS delivered them. DON'T acknowledge a record whose
transaction did not commit. DON'T run caller SQL except as ``caller_sql(text)``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import apsw
from pydantic import TypeAdapter, ValidationError

from efsqlite.core import engine, ledger
from efsqlite.core.exceptions import EfsqliteError, ErrorType
from efsqlite.core.ledger import LedgerEntry
from efsqlite.core.names import is_command_id
from efsqlite.core.position import Position
from efsqlite.core.sqlpolicy import (
    MIGRATION_HINT,
    MODULE_PRAGMAS,
    SCHEMA_TABLES,
    caller_sql,
    ddl_statement,
    function_allow_list,
    is_text,
    read_schema_names,
    reads_allowed,
    schema_change,
)
from efsqlite.core.types import Outcome
from efsqlite.write.commands import CommandContext, CommandRegistry
from efsqlite.write.exceptions import CommandRejectedError
from efsqlite.write.wire import (
    MAX_PACKED_COMMANDS,
    AnyCommand,
    Command,
    NamedCommand,
    StatementsCommand,
    parse_message,
    summarize_validation,
)

#: Transient codes after which SQLite may have rolled the transaction back on its own: the
#: whole batch is abandoned rather than committing on top of an uncertain state.
_BATCH_FATAL_CODES = {
    apsw.SQLITE_IOERR,
    apsw.SQLITE_CORRUPT,
    apsw.SQLITE_FULL,
    apsw.SQLITE_CANTOPEN,
    apsw.SQLITE_PROTOCOL,
    apsw.SQLITE_NOTADB,
}
#: Primary SQLite result codes that mean "the system could not decide": retry later.
_TRANSIENT_CODES = _BATCH_FATAL_CODES | {
    apsw.SQLITE_BUSY,
    apsw.SQLITE_LOCKED,
    apsw.SQLITE_READONLY,
    apsw.SQLITE_INTERRUPT,
}
#: A command that needs more memory or a bigger value than the caps allow: the same answer
#: every time the command runs against the same state, so it is rejected, not retried.
_RESOURCE_CODES = {apsw.SQLITE_NOMEM, apsw.SQLITE_TOOBIG}

#: The work budget counts VM steps in units of this many (one progress-handler call each).
PROGRESS_STEPS = 1000
#: About 0.6 s of SQLite work here (``python bench/bench_budget.py``: 169 M steps/s on the
#: pinned 3.54.1); a plain INSERT takes well under 100 steps.
DEFAULT_STEP_BUDGET = 100_000_000
#: After the deadline interrupts a writing statement (which loses the transaction), the
#: commands before it are replayed and committed; the replay may run this much past it.
REPLAY_GRACE_S = 0.5

_SAVEPOINT = "efsqlite_command"
_SAVEPOINT_SQL = f"SAVEPOINT {_SAVEPOINT}"
_RELEASE_SQL = f"RELEASE {_SAVEPOINT}"
_ROLLBACK_TO_SQL = f"ROLLBACK TO {_SAVEPOINT}"

_OK = apsw.SQLITE_OK
_DENY = apsw.SQLITE_DENY
_ALWAYS_ALLOWED = {apsw.SQLITE_SELECT, apsw.SQLITE_RECURSIVE}
_WRITE_ACTIONS = {apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE}


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """One SQS FIFO record, reduced to what applying it needs."""

    message_id: str
    body: str
    sequence_number: str
    group_id: str
    #: SQS's ``ApproximateReceiveCount``: this delivery is the message's n-th.
    receive_count: int = 1


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command settled (or to be settled) as rejected, and why: the one type for it."""

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
    #: Transactions committed: 1 normally, one more per command that lost the transaction.
    commits: int = 0


class _CommandFailedError(EfsqliteError):
    """A command failed; ``batch_fatal`` means nothing since the last commit may commit."""

    def __init__(
        self, error_type: str, message: str, *, batch_fatal: bool, command_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.batch_fatal = batch_fatal
        self.command_id = command_id


class _DeadlineLostError(EfsqliteError):
    """The deadline interrupted a writing statement, and SQLite rolled back the transaction.

    ``at`` is the (record, command) index of the interrupted command; the walk fills it in.
    """

    def __init__(self, position: int | None = None) -> None:
        super().__init__("the invocation ran short of time inside a writing statement")
        self.position = position
        self.at: tuple[int, int] | None = None


class _TransactionLostError(EfsqliteError):
    """A command's own SQL ended the transaction (``ON CONFLICT ROLLBACK``, an interrupt...)."""

    def __init__(self, command_id: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.command_id = command_id
        self.error_type = error_type


class _Guard:
    """The authorizer and progress handler of one batch.

    ``active`` is True only while caller SQL runs (a raw statement or a named handler); our
    own statements run with it off. The budget and the deadline are checked every
    :data:`PROGRESS_STEPS` VM steps; ``tripped`` says which one interrupted the statement.
    """

    __slots__ = (
        "active",
        "budget",
        "deadline",
        "denied",
        "functions",
        "schema",
        "steps",
        "tripped",
    )

    def __init__(
        self, schema: frozenset[str], functions: frozenset[str], budget: int, deadline: float
    ) -> None:
        self.active = False
        self.schema = schema
        self.functions = functions
        self.budget = budget
        self.deadline = deadline
        self.steps = 0
        self.tripped: str | None = None
        #: The last write-or-other action denied (action, table): says if it was DDL.
        self.denied: tuple[int, str | None] | None = None

    def start(self) -> None:
        """Caller SQL is about to run: a fresh budget, checks on."""
        self.steps = 0
        self.tripped = None
        self.denied = None
        self.active = True

    def authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if not self.active or action in _ALWAYS_ALLOWED:
            return _OK
        if action == apsw.SQLITE_READ:
            return _OK if reads_allowed(arg1, arg2, self.schema) else _DENY
        if action == apsw.SQLITE_FUNCTION:
            return _OK if (arg2 or "").lower() in self.functions else _DENY
        if action == apsw.SQLITE_PRAGMA:
            return _OK if arg1 in MODULE_PRAGMAS and arg2 is None else _DENY
        if action in _WRITE_ACTIONS:
            name = (arg1 or "").lower()
            if action == apsw.SQLITE_UPDATE and name in SCHEMA_TABLES:
                # A virtual table's constructor declaring its columns; SQLite itself refuses
                # a real write to the schema table (writable_schema is a denied PRAGMA).
                return _OK
            if (
                name in self.schema
                and not name.startswith(ledger.INTERNAL_PREFIX)
                and not name.startswith("sqlite_")
            ):
                return _OK
        self.denied = (action, arg1)
        return _DENY

    def progress(self) -> bool:
        """True interrupts the statement (``SQLITE_INTERRUPT``)."""
        if not self.active:
            return False
        self.steps += PROGRESS_STEPS
        if self.steps > self.budget:
            self.tripped = "budget"
            return True
        if time.monotonic() > self.deadline:
            self.tripped = "deadline"
            return True
        return False


@dataclass(slots=True)
class _Segment:
    """What the transaction since the last commit holds; dropped whole if it is lost."""

    entries: list[LedgerEntry] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    top_position: Position | None = None
    applied: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    added_known: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Run:
    """One call of :meth:`Applier.apply`: the records, what is committed, where to go on."""

    db: str
    records: Sequence[IncomingRecord]
    parsed: list[list[AnyCommand | _BadBody] | _BadBody]
    guard: _Guard
    schema_version: int
    known: dict[str, Outcome]
    had_failures: bool
    now_ms: int
    result: BatchResult
    forced: dict[str, Rejection] = field(default_factory=dict)
    segment: _Segment = field(default_factory=_Segment)
    #: Where the transaction since the last commit began: (record index, command index).
    start: tuple[int, int] = (0, 0)
    #: The command the deadline interrupted: the replay stops before it.
    stop_at: tuple[int, int] | None = None

    def remember(self, command_id: str, outcome: Outcome) -> None:
        self.known[command_id] = outcome
        self.segment.added_known.append(command_id)

    def settle(self, index: int) -> None:
        self.segment.settled.append(self.records[index].message_id)
        self.segment.top_position = Position.parse(self.records[index].sequence_number)

    def rewind(self) -> None:
        """The transaction since the last commit is gone: forget what it did."""
        for command_id in self.segment.added_known:
            self.known.pop(command_id, None)
        self.segment = _Segment()

    def committed(self, next_start: tuple[int, int]) -> None:
        """The segment is durable: add it to the result and go on from ``next_start``."""
        seg, result = self.segment, self.result
        result.settled.extend(seg.settled)
        result.applied += seg.applied
        result.duplicates += seg.duplicates
        result.rejections.extend(seg.rejections)
        if seg.top_position is not None:
            result.position = str(seg.top_position)
        result.commits += 1
        self.segment = _Segment()
        self.start = next_start

    def fail_rest(self, error_type: str, message: str) -> BatchResult:
        """Hand back every record not settled by a commit; what committed stays settled."""
        self.rewind()
        result = self.result
        result.failed = [r.message_id for r in self.records[self.start[0] :]]
        result.failure_type, result.failure_message = error_type, message
        return result


def classify_sqlite_error(exc: Exception) -> tuple[str, bool]:
    """Return (error type, transient?) for an error raised while running a command.

    ``exc`` is one of :data:`efsqlite.core.engine.SQL_ERRORS`. Several statements in one entry,
    a wrong number of bindings or a missing named one are ``InvalidStatement``.
    """
    code = engine.primary_code(exc)
    if code is None or isinstance(exc, apsw.BindingsError):
        return (ErrorType.INVALID_STATEMENT, False)
    if code in _TRANSIENT_CODES:
        return (engine.error_name(exc), True)
    if code in _RESOURCE_CODES:
        return (ErrorType.RESOURCE_LIMIT, False)
    # A denied function is SQLITE_ERROR "not authorized to use function: ...".
    if code == apsw.SQLITE_AUTH or str(exc).startswith("not authorized"):
        return (ErrorType.NOT_ALLOWED, False)
    if code == apsw.SQLITE_CONSTRAINT:
        return (ErrorType.CONSTRAINT_VIOLATION, False)
    return (ErrorType.SQL_ERROR, False)


class Applier:
    """Applies records to an open writer connection. Holds configuration, never record state."""

    def __init__(
        self,
        registry: CommandRegistry | None = None,
        *,
        allow_raw_statements: bool = True,
        step_budget: int = DEFAULT_STEP_BUDGET,
        extra_functions: Iterable[str] = (),
        max_receive_count: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CommandRegistry()
        #: The queue's ``maxReceiveCount``, recorded with each failure (None: not told).
        self.max_receive_count = max_receive_count
        self.allow_raw_statements = allow_raw_statements
        self.step_budget = step_budget
        self.functions = function_allow_list(extra_functions)
        self.clock = clock

    # -- public entry point -----------------------------------------------------------------
    def apply(
        self,
        conn: apsw.Connection,
        db: str,
        records: Sequence[IncomingRecord],
        *,
        prune_before_ms: int | None = None,
        deadline: float = math.inf,
    ) -> BatchResult:
        """Apply ``records`` (one FIFO group, in order) to database ``db``.

        ``deadline`` is a ``time.monotonic()`` value: no command starts after it, and one
        still running then is interrupted; what settled before it commits.
        """
        parsed = [self._parse(record, db) for record in records]
        try:
            conn.execute("BEGIN IMMEDIATE")
        except engine.SQL_ERRORS as exc:
            error_type, _ = classify_sqlite_error(exc)
            return _all_failed(db, records, error_type, str(exc))
        try:
            ids = [c.id for commands in parsed if isinstance(commands, list) for c in commands]
            ids += [r.id for r in parsed if isinstance(r, _BadBody)]
            guard = _Guard(read_schema_names(conn), self.functions, self.step_budget, deadline)
            run = _Run(
                db=db,
                records=records,
                parsed=parsed,
                guard=guard,
                schema_version=ledger.schema_version(conn),
                known=ledger.settled_outcomes(conn, ids),
                had_failures=ledger.has_failures(conn),
                now_ms=int(self.clock() * 1000),
                result=BatchResult(db=db),
            )
        except engine.SQL_ERRORS as exc:
            _rollback_quietly(conn)
            error_type, _ = classify_sqlite_error(exc)
            return _all_failed(db, records, error_type, str(exc))
        conn.set_authorizer(guard.authorize)
        conn.set_progress_handler(guard.progress, PROGRESS_STEPS)
        try:
            while True:
                try:
                    return self._walk(conn, run, prune_before_ms)
                except _TransactionLostError as lost:
                    # SQLite rolled back everything since the last commit. Replay from there
                    # with the culprit settled as rejected (and committed at once).
                    run.rewind()
                    if lost.command_id in run.forced:
                        return run.fail_rest(ErrorType.TRANSACTION_LOST, str(lost))
                    run.forced[lost.command_id] = Rejection(
                        lost.command_id, lost.error_type, str(lost)
                    )
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                    except engine.SQL_ERRORS as exc:
                        return run.fail_rest(classify_sqlite_error(exc)[0], str(exc))
                except _DeadlineLostError as lost:
                    # Replay what came before the interrupted command and commit it, within
                    # the grace period, so valid batch-mates never share its fate; it and
                    # the rest go back to SQS.
                    run.rewind()
                    if run.stop_at is not None or lost.at is None:
                        return run.fail_rest(ErrorType.DEADLINE_REACHED, str(lost))
                    run.stop_at = lost.at
                    guard.deadline += REPLAY_GRACE_S
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                    except engine.SQL_ERRORS as exc:
                        return run.fail_rest(classify_sqlite_error(exc)[0], str(exc))
                except _CommandFailedError as exc:
                    _rollback_quietly(conn)
                    return run.fail_rest(exc.error_type, str(exc))
                except engine.SQL_ERRORS as exc:
                    _rollback_quietly(conn)
                    return run.fail_rest(classify_sqlite_error(exc)[0], str(exc))
        except BaseException:
            _rollback_quietly(conn)
            raise
        finally:
            guard.active = False
            conn.set_progress_handler(None)
            conn.set_authorizer(None)

    # -- the walk over the records ----------------------------------------------------------
    def _walk(self, conn: apsw.Connection, run: _Run, prune_before_ms: int | None) -> BatchResult:
        """Apply the records from ``run.start`` on and commit; raises if the transaction is lost."""
        records, guard = run.records, run.guard
        failure: tuple[int, str, str, str | None] | None = None  # index, type, msg, id
        first_record, first_command = run.start
        for index in range(first_record, len(records)):
            record, item = records[index], run.parsed[index]
            if isinstance(item, _BadBody):
                self._settle_bad_body(record, item, run)
                run.settle(index)
                continue
            first = first_command if index == first_record else 0
            settled = False
            position = first
            stop_here = run.stop_at is not None and run.stop_at[0] == index
            try:
                plain = (
                    [c for c in item if not isinstance(c, _BadBody)]
                    if first == 0 and not stop_here
                    else []
                )
                if len(plain) == len(item) > 1 and self._apply_packed_fast(
                    conn, plain, record, run
                ):
                    run.settle(index)
                    continue
                for position in range(first, len(item)):
                    if time.monotonic() > guard.deadline or run.stop_at == (index, position):
                        raise _out_of_time()
                    element = item[position]
                    if isinstance(element, _BadBody):
                        self._settle_bad_body(record, element, run)
                        continue
                    if self._apply_command(conn, element, record, run):
                        # The command once lost the transaction: commit it at once, so a
                        # later loss replays from here, not from the start.
                        settled = position + 1 == len(item)
                        if settled:
                            run.settle(index)
                        next_start = (index + 1, 0) if settled else (index, position + 1)
                        self._commit(conn, run, next_start, begin_again=True)
            except _DeadlineLostError as lost:
                lost.at = (index, lost.position if lost.position is not None else position)
                raise
            except _CommandFailedError as exc:
                if exc.batch_fatal:
                    raise
                failure = (index, exc.error_type, str(exc), exc.command_id)
                break
            if not settled:
                run.settle(index)
        if failure is not None:
            index, error_type, message, failed_id = failure
            run.result.failed = [r.message_id for r in records[index:]]
            run.result.failure_type, run.result.failure_message = error_type, message
            if failed_id is not None:
                ledger.record_failure(
                    conn,
                    failed_id,
                    message_id=records[index].message_id,
                    error_type=error_type,
                    error_message=message,
                    at_ms=run.now_ms,
                    receive_count=records[index].receive_count,
                    max_receives=self.max_receive_count,
                )
        if prune_before_ms is not None:
            ledger.prune(conn, prune_before_ms)
        self._commit(conn, run, (len(records), 0), begin_again=False)
        return run.result

    def _commit(
        self,
        conn: apsw.Connection,
        run: _Run,
        next_start: tuple[int, int],
        *,
        begin_again: bool,
    ) -> None:
        """Write the segment's ledger rows and position, and commit (then begin anew)."""
        seg = run.segment
        ledger.record_outcomes(conn, seg.entries, settled_at_ms=run.now_ms)
        if run.had_failures and seg.entries:
            ledger.clear_failures(conn, [e.id for e in seg.entries])
        if seg.top_position is not None:
            ledger.advance_position(conn, seg.top_position)
        started = time.perf_counter()
        conn.execute("COMMIT")
        run.result.commit_ms += (time.perf_counter() - started) * 1000
        run.committed(next_start)
        if begin_again:
            conn.execute("BEGIN IMMEDIATE")

    # -- pieces -----------------------------------------------------------------------------
    def _parse(self, record: IncomingRecord, db: str) -> list[AnyCommand | _BadBody] | _BadBody:
        try:
            commands: list[AnyCommand | _BadBody] = list(parse_message(record.body))
        except ValidationError as exc:
            elements = _parse_elements(record, db)
            return elements if elements is not None else _BadBody.from_validation(record, exc)
        first = commands[0] if commands else None
        if first is not None and not isinstance(first, _BadBody) and first.db != db:
            return _BadBody(
                id=claimed_command_id(record),
                error_type=ErrorType.WRONG_MESSAGE_GROUP,
                message=(
                    f"message group {db!r} does not match the body's db {first.db!r}; "
                    "send with MessageGroupId equal to db"
                ),
            )
        return commands

    def _settle_bad_body(self, record: IncomingRecord, bad: _BadBody, run: _Run) -> None:
        seg = run.segment
        if bad.id in run.known:
            seg.duplicates += 1
            return
        run.remember(bad.id, "rejected")
        seg.entries.append(
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
        seg.rejections.append(Rejection(bad.id, bad.error_type, bad.message))

    def _apply_packed_fast(
        self,
        conn: apsw.Connection,
        commands: list[AnyCommand],
        record: IncomingRecord,
        run: _Run,
    ) -> bool:
        """Run a packed message's commands under one savepoint; False means "redo one by one".

        Two statements per command (SAVEPOINT/RELEASE) cost as much as the command itself, and
        rejections are rare. So the commands run together; if any of them is rejected or
        fails, the whole message is rolled back to its savepoint and the caller replays it
        with a savepoint per command, which gives each command its own outcome. Either way
        every command is applied atomically or not at all.
        """
        seg, guard = run.segment, run.guard
        entries_mark, duplicates_mark = len(seg.entries), seg.duplicates
        added: list[str] = []
        current = 0  # the index of the command running
        conn.execute(_SAVEPOINT_SQL)
        try:
            for current in range(len(commands)):
                command = commands[current]
                if command.id in run.known:
                    seg.duplicates += 1
                    continue
                if (
                    command.id in run.forced
                    or time.monotonic() > guard.deadline
                    or self._precheck(command, run.schema_version)
                ):
                    raise _RedoOneByOneError
                guard.start()
                try:
                    self._execute(conn, run.db, command, run.schema_version)
                finally:
                    guard.active = False
                run.known[command.id] = "applied"
                added.append(command.id)
                seg.entries.append(
                    LedgerEntry(command.id, "applied", record.sequence_number, record.message_id)
                )
        except Exception as exc:
            for command_id in added:
                del run.known[command_id]
            if not conn.in_transaction:
                # The command's own SQL ended the transaction: replay with it rejected (or,
                # for I/O-class errors and the deadline, fail the rest).
                raise _fast_path_lost(commands[current].id, current, exc, guard) from exc
            conn.execute(_ROLLBACK_TO_SQL)
            conn.execute(_RELEASE_SQL)
            del seg.entries[entries_mark:]
            seg.duplicates = duplicates_mark
            return False
        conn.execute(_RELEASE_SQL)
        seg.added_known.extend(added)
        seg.applied += len(added)
        return True

    def _apply_command(
        self,
        conn: apsw.Connection,
        command: AnyCommand,
        record: IncomingRecord,
        run: _Run,
    ) -> bool:
        """Settle one command in the segment; True when it was a replayed culprit."""
        seg = run.segment
        if command.id in run.known:
            seg.duplicates += 1
            return False
        forced = run.forced.get(command.id)
        rejection = forced or self._precheck(command, run.schema_version)
        if rejection is None:
            rejection = self._run(conn, run, command)
        if rejection is None:
            entry = LedgerEntry(command.id, "applied", record.sequence_number, record.message_id)
            seg.applied += 1
        else:
            entry = LedgerEntry(
                command.id,
                "rejected",
                record.sequence_number,
                record.message_id,
                rejection.error_type,
                ledger.excerpt(rejection.error_message),
            )
            seg.rejections.append(rejection)
        run.remember(command.id, entry.outcome)
        seg.entries.append(entry)
        return forced is not None

    def _precheck(self, command: AnyCommand, version: int) -> Rejection | None:
        if command.expect_schema is not None and command.expect_schema > version:
            raise _CommandFailedError(
                ErrorType.SCHEMA_NOT_READY,
                f"command {command.id!r} expects schema version {command.expect_schema} but the "
                f"database is at {version}",
                batch_fatal=False,
                command_id=command.id,
            )
        if isinstance(command, StatementsCommand) and not self.allow_raw_statements:
            return Rejection(
                command.id,
                ErrorType.NOT_ALLOWED,
                "raw statements are turned off; use a named command",
            )
        return None

    def _execute(self, conn: apsw.Connection, db: str, command: AnyCommand, version: int) -> None:
        """Run the command's SQL with the caller checks on (the guard is active)."""
        if isinstance(command, StatementsCommand):
            for statement in command.statements:
                # Stepped to the end (RETURNING, SELECT) but never kept: memory stays flat.
                for _ in engine.execute_one(conn, caller_sql(statement.sql), statement.params):
                    pass
        else:
            self._run_named(conn, db, command, version)

    def _run(self, conn: apsw.Connection, run: _Run, command: AnyCommand) -> Rejection | None:
        guard = run.guard
        conn.execute(_SAVEPOINT_SQL)
        guard.start()
        try:
            try:
                self._execute(conn, run.db, command, run.schema_version)
            finally:
                guard.active = False
        except _CommandRejectedSignalError as exc:
            return self._undo(conn, command.id, exc.rejection)
        except CommandRejectedError as exc:
            return self._undo(conn, command.id, Rejection(command.id, exc.error_type, str(exc)))
        except engine.SQL_ERRORS as exc:
            tripped = guard.tripped
            if tripped == "budget":
                return self._undo(conn, command.id, _budget_rejection(command.id, guard.budget))
            if tripped == "deadline":
                if not conn.in_transaction:
                    raise _DeadlineLostError() from exc
                self._undo(conn, command.id, None)
                raise _out_of_time() from exc
            error_type, transient = classify_sqlite_error(exc)
            code = engine.primary_code(exc)
            if transient:
                if code in _BATCH_FATAL_CODES or not conn.in_transaction:
                    raise _CommandFailedError(error_type, str(exc), batch_fatal=True) from exc
                self._undo(conn, command.id, None)
                raise _failed_for(command.id, error_type, str(exc)) from exc
            message = str(exc)
            if error_type == ErrorType.NOT_ALLOWED:
                message = _not_allowed_message(command, guard, message)
            return self._undo(conn, command.id, Rejection(command.id, error_type, message))
        except MemoryError:
            # Python ran out of memory building a value for SQLite (SQLite's own SQLITE_NOMEM
            # is ResourceLimit above): the command would need as much on every retry.
            return self._undo(conn, command.id, _memory_rejection(command.id))
        except (UnicodeEncodeError, OverflowError) as exc:
            # A value SQLite cannot bind (a lone surrogate, an int beyond 64 bits): the
            # command's own input, so the same answer on every retry.
            kind = (
                ErrorType.INVALID_PARAMS
                if isinstance(command, StatementsCommand)
                else ErrorType.INVALID_ARGS
            )
            return self._undo(
                conn, command.id, Rejection(command.id, kind, f"{type(exc).__name__}: {exc}")
            )
        except (ValueError, TypeError) as exc:
            if isinstance(command, StatementsCommand):
                return self._undo(
                    conn, command.id, Rejection(command.id, ErrorType.INVALID_PARAMS, str(exc))
                )
            self._undo(conn, command.id, None)
            raise _failed_for(command.id, ErrorType.HANDLER_ERROR, repr(exc)) from exc
        except Exception as exc:
            # A bug in a named command's handler: the system cannot decide, so retry / DLQ.
            if not conn.in_transaction:
                raise _CommandFailedError(
                    ErrorType.HANDLER_ERROR, repr(exc), batch_fatal=True
                ) from exc
            self._undo(conn, command.id, None)
            raise _failed_for(command.id, ErrorType.HANDLER_ERROR, repr(exc)) from exc
        conn.execute(_RELEASE_SQL)
        return None

    def _run_named(
        self, conn: apsw.Connection, db: str, command: NamedCommand, version: int
    ) -> None:
        spec = self.registry.get(command.command)
        if spec is None:
            raise _CommandRejectedSignalError(
                Rejection(
                    command.id,
                    ErrorType.UNKNOWN_COMMAND,
                    f"no named command {command.command!r} is registered",
                )
            )
        try:
            args = spec.args_model.model_validate(command.args)
        except ValidationError as exc:
            raise _CommandRejectedSignalError(
                Rejection(
                    command.id,
                    ErrorType.INVALID_ARGS,
                    f"{command.command}: {summarize_validation(exc, root='args')}",
                )
            ) from None
        spec.handler(CommandContext(conn, db, command.id, version), args)

    def _undo(
        self, conn: apsw.Connection, command_id: str, rejection: Rejection | None
    ) -> Rejection | None:
        if not conn.in_transaction:
            if rejection is None:
                raise _CommandFailedError(
                    ErrorType.TRANSACTION_LOST,
                    "the transaction ended under a command",
                    batch_fatal=True,
                )
            raise _TransactionLostError(command_id, rejection.error_type, rejection.error_message)
        conn.execute(_ROLLBACK_TO_SQL)
        conn.execute(_RELEASE_SQL)
        return rejection


class _RedoOneByOneError(EfsqliteError):
    """Leave the packed fast path and replay the message one command at a time."""


def _not_allowed_message(command: AnyCommand, guard: _Guard, message: str) -> str:
    """SQLite's "not authorized", or for DDL what to do instead: write a migration."""
    change = schema_change(*guard.denied) if guard.denied is not None else None
    if change is None:
        return message
    if isinstance(command, StatementsCommand):
        found = (ddl_statement(s.sql) for s in command.statements)
        change = next((label for label in found if label is not None), change)
    return f"{change} is not allowed in a command: {MIGRATION_HINT}"


def _budget_rejection(command_id: str, budget: int) -> Rejection:
    return Rejection(
        command_id,
        ErrorType.RESOURCE_LIMIT,
        f"command {command_id!r} used up its work budget of {budget:,} SQLite VM steps "
        "(EFSQLITE_COMMAND_STEP_BUDGET)",
    )


def _memory_rejection(command_id: str) -> Rejection:
    return Rejection(
        command_id,
        ErrorType.RESOURCE_LIMIT,
        f"command {command_id!r} needed more memory than SQLite's heap limit "
        "(EFSQLITE_MAX_HEAP_MB)",
    )


def _out_of_time() -> _CommandFailedError:
    return _CommandFailedError(
        ErrorType.DEADLINE_REACHED,
        "the invocation ran short of time; the rest of the batch is handed back to SQS",
        batch_fatal=False,
    )


def _fast_path_lost(
    culprit: str, index: int, exc: Exception, guard: _Guard
) -> _TransactionLostError | _CommandFailedError | _DeadlineLostError:
    """Classify an error that ended the transaction while on the packed fast path."""
    if guard.tripped == "budget":
        rejection = _budget_rejection(culprit, guard.budget)
        return _TransactionLostError(culprit, rejection.error_type, rejection.error_message)
    if guard.tripped == "deadline":
        return _DeadlineLostError(index)
    if isinstance(exc, engine.SQL_ERRORS):
        error_type, transient = classify_sqlite_error(exc)
        if not transient:
            return _TransactionLostError(culprit, error_type, str(exc))
        return _CommandFailedError(error_type, str(exc), batch_fatal=True)
    if isinstance(exc, CommandRejectedError):
        return _TransactionLostError(culprit, exc.error_type, str(exc))
    if isinstance(exc, MemoryError):
        rejection = _memory_rejection(culprit)
        return _TransactionLostError(culprit, rejection.error_type, rejection.error_message)
    if isinstance(exc, UnicodeEncodeError | OverflowError):
        return _TransactionLostError(
            culprit, ErrorType.INVALID_ARGS, f"{type(exc).__name__}: {exc}"
        )
    return _CommandFailedError(ErrorType.HANDLER_ERROR, repr(exc), batch_fatal=True)


class _CommandRejectedSignalError(EfsqliteError):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.error_message)
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
            id=claimed_command_id(record) if is_json else f"message:{record.message_id}",
            error_type=ErrorType.INVALID_MESSAGE if is_json else ErrorType.UNPARSEABLE_BODY,
            message=summarize_validation(exc),
        )


def claimed_command_id(record: IncomingRecord) -> str:
    """The command id a bad body claims, so ``command_status(id)`` finds the rejection."""
    try:
        value = json.loads(record.body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        candidate = value.get("id")
        if is_command_id(candidate) and is_text(candidate):
            return candidate
    return f"message:{record.message_id}"


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


def _rollback_quietly(conn: apsw.Connection) -> None:
    try:
        conn.set_authorizer(None)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except apsw.Error:
        pass


_COMMAND_ADAPTER: TypeAdapter[StatementsCommand | NamedCommand] = TypeAdapter(Command)


def _parse_elements(record: IncomingRecord, db: str) -> list[AnyCommand | _BadBody] | None:
    """A packed message that failed as a whole, element by element; None if its envelope is bad.

    Each invalid element is rejected under its own id (or ``message:<message id>:<index>``),
    and its valid neighbours still apply: one typo must not strand 9,999 ids as "unknown".
    """
    try:
        value = json.loads(record.body, parse_constant=_NotJson)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or set(value) != {"v", "db", "commands"}:
        return None
    commands = value["commands"]
    if (
        type(value["v"]) is not int
        or value["v"] != 1
        or value["db"] != db
        or not isinstance(commands, list)
        or not 1 <= len(commands) <= MAX_PACKED_COMMANDS
    ):
        return None
    items: list[AnyCommand | _BadBody] = []
    for index, element in enumerate(commands):
        fallback = f"message:{record.message_id}:{index}"
        try:
            if _holds_non_json(element):
                raise ValueError("NaN and Infinity are not JSON (RFC 8259)")
            command = _COMMAND_ADAPTER.validate_python(element)
        except (ValidationError, ValueError, RecursionError) as exc:
            claimed = element.get("id") if isinstance(element, dict) else None
            usable = is_command_id(claimed) and is_text(claimed)
            if isinstance(exc, ValidationError):
                message = summarize_validation(exc, root="command")
            else:
                message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            items.append(
                _BadBody(
                    id=claimed if usable and isinstance(claimed, str) else fallback,
                    error_type=ErrorType.INVALID_MESSAGE,
                    message=f"commands[{index}]: {message}",
                )
            )
            continue
        if command.db != db:
            items.append(
                _BadBody(
                    id=command.id,
                    error_type=ErrorType.WRONG_DATABASE,
                    message=f"commands[{index}].db is {command.db!r} but the envelope's is {db!r}",
                )
            )
            continue
        items.append(command)
    return items


class _NotJson:
    """What ``NaN``/``Infinity`` in a body parse to: no model accepts it."""

    def __init__(self, name: str) -> None:
        self.name = name


def _holds_non_json(value: object) -> bool:
    if isinstance(value, _NotJson):
        return True
    if isinstance(value, dict):
        return any(_holds_non_json(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_non_json(v) for v in value)
    return False
