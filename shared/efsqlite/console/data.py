"""What the console shows, read through the client library: the reader, the queues, the writer's
queue for the send form, and the redrive the CLI runs.

Every read goes where ``efsqlite query``/``status``/``redrive``/``send`` go, so the console
answers what the CLI would: a database's tables and counts are reader queries; its position,
schema version and failing commands the reader's ``database_status``; a command's state the
reader's ``command_status``; recent commands a reader query on the ledger table.

DO keep a reader's error answer whole (:class:`Problem`): its type, message, ``retryable`` and
extra fields are what the page shows, as the reader gave them.
DON'T open a database file here, not even read-only: the reader is the only view of EFS a
client has in AWS, and the console must show what a client sees. (The file's size is a
``stat``, which takes no lock.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efsqlite.client import (
    Bookmark,
    CommandStatus,
    Endpoints,
    QueryResult,
    ReadClient,
    WriteClient,
    encode_command,
    named_command,
    sql_command,
)
from efsqlite.client.exceptions import ReaderInvokeError, ReadRequestError
from efsqlite.client.queues import PeekedMessage, QueueCounts, connect_sqs, peek_messages
from efsqlite.client.redrive import RedriveProgress, RedriveResult, redrive
from efsqlite.client.status import (
    DatabaseStatus,
    SqliteVersions,
    collect_status,
    local_databases,
)
from efsqlite.core.exceptions import EfsqliteError
from efsqlite.core.ledger import COMMANDS_TABLE, INTERNAL_PREFIX
from efsqlite.core.position import Position
from efsqlite.read.answers import ErrorAnswer
from efsqlite.read.queries import NamedQuery, QueryRegistry
from efsqlite.write.commands import CommandRegistry

#: Rows a page of results shows.
PAGE_ROWS = 50
#: Characters of a DLQ message's body a page shows.
BODY_EXCERPT_CHARS = 300
#: The ledger's recent commands, newest first; ``:q`` finds ids containing it.
RECENT_COMMANDS_SQL = (
    "SELECT id, outcome, position, error_type, error_message, settled_at_ms "
    f"FROM {COMMANDS_TABLE} WHERE :q = '' OR instr(id, :q) > 0 "
    "ORDER BY settled_at_ms DESC, id LIMIT :limit OFFSET :offset"
)
TABLES_SQL = (
    "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite^_%' ESCAPE '^' ORDER BY name"
)


#: An error to show, in the shape of the reader's error answer: the reader's own as it gave it
#: (type, message, retryable, extra fields), or the client's (see :func:`problem_of`).
Problem = ErrorAnswer


def problem_of(exc: BaseException) -> Problem:
    """The error to show for ``exc``."""
    if isinstance(exc, ReadRequestError):
        return Problem(exc.error_type, exc.message, exc.retryable, dict(exc.extra))
    name = type(exc).__name__
    # Ours are named as docs/errors.md names types (InvalidCommand); others as Python does.
    if isinstance(exc, EfsqliteError):
        name = name.removesuffix("Error") or name
    return Problem(name, str(exc))


def quote_name(name: str) -> str:
    """An SQL identifier for ``name``, whatever it holds."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class TableView:
    name: str
    kind: str  # "table" or "view"
    columns: list[str] = field(default_factory=list)
    rows: int | None = None
    problem: Problem | None = None

    @property
    def internal(self) -> bool:
        """The writer's own tables (the ledger), shown apart from the app's."""
        return self.name.startswith(INTERNAL_PREFIX)


@dataclass(frozen=True, slots=True)
class DatabaseView:
    name: str
    status: DatabaseStatus
    size_bytes: int | None
    tables: list[TableView] = field(default_factory=list)
    problem: Problem | None = None


@dataclass(frozen=True, slots=True)
class QueryForm:
    """The query page's fields, as typed (text), so a refused form comes back as it was."""

    db: str = ""
    sql: str = ""
    named: str = ""
    params: str = ""
    min_position: str = ""
    page: int = 1


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page of a query's answer: the reader's whole answer, and the slice shown."""

    result: QueryResult
    page: int
    rows: list[list[Any]]
    has_next: bool
    #: The reader's byte cap cut the answer before the page's last row.
    cut_by_bytes: bool


@dataclass(frozen=True, slots=True)
class RecentCommand:
    id: str
    outcome: str
    position: str
    error_type: str | None
    error_message: str | None
    settled_at_ms: int


@dataclass(frozen=True, slots=True)
class QueueView:
    queue: QueueCounts | None
    dlq: QueueCounts | None
    messages: list[PeekedMessage]
    #: Failing commands by id, from every database's ledger: what a DLQ message last hit.
    failures: dict[str, CommandStatus]
    databases: dict[str, DatabaseStatus]
    problem: Problem | None = None


@dataclass(frozen=True, slots=True)
class SendForm:
    db: str = ""
    kind: str = "named"  # "named" or "sql"
    command: str = ""
    args: str = ""
    sql: str = ""
    params: str = ""
    id: str = ""
    expect_schema: str = ""


def page_of(result: QueryResult, page: int) -> QueryPage:
    """Page ``page`` (from 1) of an answer the reader gave for ``page * PAGE_ROWS`` rows.

    The reader sets ``truncated`` when rows were left over: with every row asked for there, it
    means a next page; with fewer, its byte cap cut the answer short (shown as such).
    """
    wanted = page * PAGE_ROWS
    full = len(result.rows) >= wanted
    return QueryPage(
        result,
        page,
        result.rows[(page - 1) * PAGE_ROWS : wanted],
        has_next=result.truncated and full,
        cut_by_bytes=result.truncated and not full,
    )


class InvalidFormError(EfsqliteError, ValueError):
    """A form field the console cannot use (not JSON, not a number): named in the message."""


def json_field(text: str, name: str, *, kinds: tuple[type, ...]) -> Any:
    """A form field holding JSON of one of ``kinds`` (empty: ``None``)."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidFormError(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, kinds):
        wanted = " or ".join("an array" if k is list else "an object" for k in kinds)
        raise InvalidFormError(f"{name} must be {wanted}")
    return value


class Console:
    """The console's view of one stack: its clients, its registries and its one redrive."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        queries: QueryRegistry | None = None,
        commands: CommandRegistry | None = None,
        declared: str = "*",
    ) -> None:
        self.sqs, self.endpoints = connect_sqs(endpoints)
        self.reader = ReadClient(endpoints=self.endpoints)
        self.writer = WriteClient(self.sqs, endpoints=self.endpoints)
        self.queries = queries or QueryRegistry()
        self.commands = commands or CommandRegistry()
        self.declared = declared
        self.redrive_task = RedriveTask(lambda on: redrive(self.endpoints, sqs=self.sqs, **on))

    # -- databases ----------------------------------------------------------------------------
    def database_names(self) -> list[str]:
        return local_databases(self.endpoints)

    def _file(self, db: str) -> Path | None:
        folder = self.endpoints.databases_dir
        return None if folder is None else folder / f"{db}.sqlite"

    def databases(self) -> tuple[list[DatabaseView], SqliteVersions]:
        """Every database of the stack's folder, and the SQLite releases here and the reader's."""
        report = collect_status(self.endpoints, sqs=self.sqs, reader=self.reader)
        views = [self.database(db, status) for db, status in report.databases.items()]
        return views, report.sqlite

    def database(self, db: str, status: DatabaseStatus) -> DatabaseView:
        path = self._file(db)
        try:
            size = path.stat().st_size if path is not None else None
        except OSError:
            size = None
        try:
            listed = self.reader.query(TABLES_SQL, db=db)
        except (ReadRequestError, ReaderInvokeError) as exc:
            return DatabaseView(db, status, size, problem=problem_of(exc))
        tables = [self._table(db, str(name), str(kind)) for name, kind in listed.rows]
        tables.sort(key=lambda t: (t.internal, t.name))
        return DatabaseView(db, status, size, tables)

    def _table(self, db: str, name: str, kind: str) -> TableView:
        try:
            shape = self.reader.query(f"SELECT * FROM {quote_name(name)} LIMIT 0", db=db)
            counted = self.reader.query(f"SELECT count(*) FROM {quote_name(name)}", db=db)
        except (ReadRequestError, ReaderInvokeError) as exc:
            return TableView(name, kind, problem=problem_of(exc))
        return TableView(name, kind, shape.columns, int(counted.rows[0][0]))

    # -- queries ------------------------------------------------------------------------------
    def named_queries(self) -> list[NamedQuery]:
        return sorted(self.queries, key=lambda q: q.name)

    def query(self, form: QueryForm) -> QueryPage:
        """Run the form's query for its page: the reader is asked for every row up to the
        page's last plus one, so its own ``truncated`` says whether a next page exists.

        Raises :class:`ReadRequestError` (the reader's answer), :class:`ReaderInvokeError`,
        :class:`InvalidFormError` or the position's parse error.
        """
        if not form.db:
            raise InvalidFormError("choose a database")
        params = json_field(form.params, "params", kinds=(list, dict))
        min_position = Position.parse(form.min_position.strip()) if form.min_position else None
        page = max(1, form.page)
        wanted = page * PAGE_ROWS
        if form.named:
            result = self.reader.named_query(
                form.named, params, db=form.db, min_position=min_position, max_rows=wanted
            )
        else:
            if not form.sql.strip():
                raise InvalidFormError("write a query, or pick a named one")
            result = self.reader.query(
                form.sql, params, db=form.db, min_position=min_position, max_rows=wanted
            )
        return page_of(result, page)

    # -- commands -----------------------------------------------------------------------------
    def recent_commands(
        self, db: str, *, search: str = "", page: int = 1
    ) -> tuple[list[RecentCommand], bool]:
        """A page of the ledger's settled commands, newest first, ids containing ``search``;
        and whether there is another page. Raises the reader's errors."""
        page = max(1, page)
        result = self.reader.query(
            RECENT_COMMANDS_SQL,
            {"q": search, "limit": PAGE_ROWS + 1, "offset": (page - 1) * PAGE_ROWS},
            db=db,
        )
        found = [
            RecentCommand(
                str(row[0]),
                str(row[1]),
                str(row[2]),
                row[3],
                row[4],
                int(row[5]),
            )
            for row in result.rows[:PAGE_ROWS]
        ]
        return found, len(result.rows) > PAGE_ROWS

    def database_status(self, db: str) -> DatabaseStatus:
        """One database's ledger summary as ``efsqlite status`` shows it (a group with nothing
        queued behind its failure is not blocked)."""
        report = collect_status(self.endpoints, databases=[db], sqs=self.sqs, reader=self.reader)
        return report.databases[db]

    def command_status(self, db: str, command_id: str) -> CommandStatus:
        """Raises the reader's errors."""
        return self.reader.command_status(command_id, db=db)

    # -- queues -------------------------------------------------------------------------------
    def queues(self) -> QueueView:
        try:
            report = collect_status(self.endpoints, sqs=self.sqs, reader=self.reader)
            messages = (
                peek_messages(self.sqs, self.endpoints.dlq_url)
                if self.endpoints.dlq_url and report.dlq is not None and report.dlq.visible
                else []
            )
        except EfsqliteError as exc:
            return QueueView(None, None, [], {}, {}, problem_of(exc))
        failures = {
            failure.id: failure
            for status in report.databases.values()
            for failure in status.failures
        }
        return QueueView(report.queue, report.dlq, messages, failures, report.databases)

    # -- sending ------------------------------------------------------------------------------
    def send(self, form: SendForm) -> Bookmark:
        """Build the form's command with the client's helpers, check it as the writer will,
        and send it. Raises :class:`InvalidFormError`, the client's ``InvalidCommandError`` (one
        line naming the field), ``MessageTooLargeError`` or ``SendError``."""
        expect: int | None = None
        if form.expect_schema.strip():
            try:
                expect = int(form.expect_schema)
            except ValueError:
                raise InvalidFormError("expect_schema must be a whole number") from None
        command_id = form.id.strip() or None
        if form.kind == "sql":
            params = json_field(form.params, "params", kinds=(list, dict))
            command = sql_command(form.db, form.sql, params, id=command_id, expect_schema=expect)
        else:
            args = json_field(form.args, "args", kinds=(dict,))
            command = named_command(
                form.db, form.command, args, id=command_id, expect_schema=expect
            )
        encode_command(command)  # the writer's own models: a mistake is one line, sent nowhere
        return self.writer.send(command)


@dataclass(slots=True)
class RedriveTask:
    """The one redrive a console runs at a time, in a thread, with its latest progress.

    ``run`` is :func:`efsqlite.client.redrive.redrive` bound to the stack; it gets the
    ``on_progress`` keyword.
    """

    run: Callable[[dict[str, Any]], RedriveResult]
    progress: RedriveProgress | None = None
    result: RedriveResult | None = None
    problem: Problem | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start a redrive unless one is running; False if one was."""
        with self._lock:
            if self.running:
                return False
            self.progress, self.result, self.problem = None, None, None
            self.started_ms, self.finished_ms = int(time.time() * 1000), None
            self._thread = threading.Thread(target=self._work, name="console-redrive", daemon=True)
            self._thread.start()
            return True

    def _work(self) -> None:
        try:
            self.result = self.run({"on_progress": self._progress})
        except Exception as exc:  # shown on the page; a redrive is safe to run again
            self.problem = problem_of(exc)
        finally:
            self.finished_ms = int(time.time() * 1000)

    def _progress(self, progress: RedriveProgress) -> None:
        self.progress = progress

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def form_value(fields: Mapping[str, Sequence[str]], name: str) -> str:
    """A form field's first value ('' when absent)."""
    values = fields.get(name) or [""]
    return values[0]
