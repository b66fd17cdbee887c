"""The ledger: each command's outcome and the settled position, inside the database itself.

Outcomes live in the same file and the same transaction as the writes they describe, so
"applied" in the ledger and the rows in the tables can never disagree, whatever crashes.
The ledger is what makes redelivery, a new deduplication id and a DLQ redrive safe: SQS FIFO
deduplicates for only five minutes, and a redrive gives messages new ids.

DO read and write the settled position as a :class:`~efsqlite.core.position.Position` (its
module has the parse, encoding and comparison rules).

DO keep the failures table small and current: a row exists only while its command has not
settled (settling deletes it), so "is this database blocked?" reads a handful of rows, never
the outcomes table.
DO add a ledger column as nullable with ``ALTER TABLE ... ADD COLUMN`` in
:func:`ensure_ledger` (see :data:`_ADDED_COLUMNS`): files written by an older writer keep
working, and readers read failures by column name, so they accept either shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from efsqlite.core.engine import Connection, Error
from efsqlite.core.position import Position
from efsqlite.core.types import CommandState, Outcome

COMMANDS_TABLE = "_efsqlite_commands"
STATE_TABLE = "_efsqlite_state"
FAILURES_TABLE = "_efsqlite_failures"
MIGRATIONS_TABLE = "_efsqlite_migrations"
#: Tables (and their indexes) that commands may never write.
INTERNAL_PREFIX = "_efsqlite_"

#: Bound on stored error messages and body excerpts, so a hostile body cannot bloat the ledger.
MAX_EXCERPT_CHARS = 512
#: Keep ``IN (...)`` look-ups under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 500

LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {COMMANDS_TABLE} (
    id TEXT PRIMARY KEY NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    position TEXT NOT NULL,
    message_id TEXT NOT NULL,
    error_type TEXT,
    error_message TEXT,
    body_excerpt TEXT,
    settled_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {COMMANDS_TABLE}_settled ON {COMMANDS_TABLE}(settled_at_ms);
CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {FAILURES_TABLE} (
    id TEXT PRIMARY KEY NOT NULL,
    message_id TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL,
    first_at_ms INTEGER,
    receive_count INTEGER,
    max_receives INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL
);
"""


#: Columns added to the failures table after its first release, with their types: an older
#: file gains them, NULL, the first time a newer writer opens it.
_ADDED_COLUMNS = {
    FAILURES_TABLE: (
        ("first_at_ms", "INTEGER"),
        ("receive_count", "INTEGER"),
        ("max_receives", "INTEGER"),
    ),
}
#: Failures listed in a :class:`LedgerSummary`, most recent first.
MAX_FAILURES_LISTED = 20
#: SQL: a failures row is in the DLQ once its receive count reached the queue's maximum (as
#: :func:`_failure_status` decides it); an older file, without the columns, has none.
_IN_DLQ_SQL = "coalesce(receive_count >= max_receives, 0)"


def excerpt(text: str, limit: int = MAX_EXCERPT_CHARS) -> str:
    """A bounded prefix of ``text`` for diagnostics."""
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more]"


class LedgerEntry(NamedTuple):
    """One settled command, in the ledger's column order (inserted as it is).

    A tuple rather than a dataclass: packed batches build thousands per commit.
    ``position`` is the message's sequence number as SQS gives it (no padding; only the
    state table's position is compared as text).
    """

    id: str
    outcome: Outcome
    position: str
    message_id: str
    error_type: str | None = None
    error_message: str | None = None
    body_excerpt: str | None = None


#: A command's states: settled ("applied", "rejected"); "pending" (it failed at least once
#: and SQS will deliver it again); "in_dlq" (its last failure was its message's last receive
#: allowed by the queue's ``maxReceiveCount``, so SQS moved it to the DLQ, where it stays
#: until redriven); or "unknown" (not seen yet: queued, in flight, or never sent).
COMMAND_STATES: tuple[CommandState, ...] = (
    "applied",
    "rejected",
    "pending",
    "in_dlq",
    "unknown",
)
SETTLED_STATES: frozenset[CommandState] = frozenset({"applied", "rejected"})


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """A command's status: settled, or failing (pending or in the DLQ), or unknown.

    The one type for it: the ledger reads it, the reader answers it
    (``efsqlite.read.answers.StatusAnswer``), the client returns it. For a rejected command
    ``error_*`` is the reason; for a failing one it is the last failure, and:

    - ``attempts``: failures the writer recorded for it;
    - ``receive_count``: SQS's ``ApproximateReceiveCount`` of the message at its last failure;
    - ``receives_left``: deliveries left before SQS moves it to the DLQ (0 once it has);
      ``None`` when the writer was not told the queue's ``maxReceiveCount``;
    - ``failing_since_ms``, ``last_failed_ms``: epoch milliseconds of its first and last
      recorded failure.
    """

    id: str
    state: CommandState
    position: Position | None = None
    error_type: str | None = None
    error_message: str | None = None
    attempts: int | None = None
    receive_count: int | None = None
    receives_left: int | None = None
    failing_since_ms: int | None = None
    last_failed_ms: int | None = None

    @property
    def settled(self) -> bool:
        """Applied or rejected: the outcome is final."""
        return self.state in SETTLED_STATES

    def to_json(self) -> dict[str, Any]:
        """The flat JSON form scripts read (``efsqlite status --command --json``)."""
        return {
            "id": self.id,
            "state": self.state,
            "position": None if self.position is None else str(self.position),
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "receive_count": self.receive_count,
            "receives_left": self.receives_left,
            "failing_since_ms": self.failing_since_ms,
            "last_failed_ms": self.last_failed_ms,
        }

    @property
    def failing(self) -> bool:
        """Failed at least once and not settled: being retried, or parked in the DLQ."""
        return self.state in ("pending", "in_dlq")


def ensure_ledger(conn: Connection) -> None:
    """Create the ledger tables if missing. Idempotent; runs inside the caller's transaction."""
    for statement in LEDGER_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    for table, columns in _ADDED_COLUMNS.items():
        have = set(_columns(conn, table))
        for name, kind in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def settled_outcomes(conn: Connection, ids: Iterable[str]) -> dict[str, Outcome]:
    """The outcome of each id in ``ids`` that is already in the ledger."""
    unique = list(dict.fromkeys(ids))
    found: dict[str, Outcome] = {}
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        for command_id, outcome in conn.execute(
            f"SELECT id, outcome FROM {COMMANDS_TABLE} WHERE id IN ({marks})", chunk
        ):
            found[command_id] = outcome
    return found


def record_outcomes(
    conn: Connection, entries: Sequence[LedgerEntry], *, settled_at_ms: int
) -> None:
    """Insert settled outcomes, all stamped ``settled_at_ms`` (bound, so the text is cached)."""
    if not entries:
        return
    stamp = int(settled_at_ms)
    conn.executemany(
        f"INSERT INTO {COMMANDS_TABLE} (id, outcome, position, message_id, error_type, "
        f"error_message, body_excerpt, settled_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(*entry, stamp) for entry in entries],
    )


def clear_failures(conn: Connection, ids: Sequence[str]) -> None:
    conn.executemany(f"DELETE FROM {FAILURES_TABLE} WHERE id = ?", [(i,) for i in ids])


def has_table(conn: Connection, table: str) -> bool:
    """Whether ``table`` exists in the main schema."""
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        is not None
    )


def has_failures(conn: Connection) -> bool:
    return conn.execute(f"SELECT 1 FROM {FAILURES_TABLE} LIMIT 1").fetchone() is not None


def record_failure(
    conn: Connection,
    command_id: str,
    *,
    message_id: str,
    error_type: str,
    error_message: str,
    at_ms: int,
    receive_count: int | None = None,
    max_receives: int | None = None,
) -> None:
    """Remember the last failure of a command that is not settled, for ``command_status``.

    ``receive_count`` is the message's ``ApproximateReceiveCount`` at this failure and
    ``max_receives`` the queue's ``maxReceiveCount`` as the writer was told it: together they
    say whether SQS will deliver it again or move it to the DLQ. The first failure's time is
    kept; a redriven copy (a new message id, its receive count back to 1) updates the rest.
    """
    conn.execute(
        f"INSERT INTO {FAILURES_TABLE} (id, message_id, error_type, error_message, attempts, "
        "last_at_ms, first_at_ms, receive_count, max_receives) "
        "VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
        "message_id = excluded.message_id, error_type = excluded.error_type, "
        "error_message = excluded.error_message, attempts = attempts + 1, "
        "last_at_ms = excluded.last_at_ms, receive_count = excluded.receive_count, "
        "max_receives = excluded.max_receives, "
        "first_at_ms = coalesce(first_at_ms, excluded.first_at_ms)",
        (
            command_id,
            message_id,
            error_type,
            excerpt(error_message),
            at_ms,
            at_ms,
            receive_count,
            max_receives,
        ),
    )


def _failure_status(row: dict[str, Any]) -> CommandStatus:
    """A failures row (by column name, so an older file's shape reads too) as a status."""
    received, most = row.get("receive_count"), row.get("max_receives")
    left = None if received is None or most is None else max(int(most) - int(received), 0)
    return CommandStatus(
        id=row["id"],
        state="in_dlq" if left == 0 else "pending",
        error_type=row["error_type"],
        error_message=row["error_message"],
        attempts=row["attempts"],
        receive_count=received,
        receives_left=left,
        failing_since_ms=row.get("first_at_ms") or row["last_at_ms"],
        last_failed_ms=row["last_at_ms"],
    )


def _columns(conn: Connection, table: str) -> list[str]:
    return [str(row[0]) for row in conn.execute(f"SELECT name FROM pragma_table_info('{table}')")]


def _failure_rows(conn: Connection, where: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    """Failures rows as dicts by column name (an older file lacks the added columns)."""
    names = _columns(conn, FAILURES_TABLE)
    if not names:  # no ledger yet
        return []
    listed = ", ".join(names)
    rows = conn.execute(f"SELECT {listed} FROM {FAILURES_TABLE} {where}", args).fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def read_position(conn: Connection) -> Position:
    """The highest settled position (``Position.ZERO`` before the first commit)."""
    return read_state(conn)[0]


def read_state(conn: Connection) -> tuple[Position, int]:
    """(settled position, schema version), read by one statement so the two agree.

    A file with no ledger yet (a database created but never committed to, as a reader may
    see it) is at ``Position.ZERO``.
    """
    try:
        ((stored, version),) = conn.execute(
            f"SELECT (SELECT value FROM {STATE_TABLE} WHERE key = 'position'), "
            "(SELECT user_version FROM pragma_user_version)"
        ).fetchall()
    except Error as exc:
        if "no such table" not in str(exc):
            raise
        return Position.ZERO, schema_version(conn)
    return (Position.ZERO if stored is None else Position.parse(stored)), int(str(version))


def advance_position(conn: Connection, position: Position) -> None:
    """Raise the settled position to ``position``; never lowers it (stored text compares)."""
    conn.execute(
        f"INSERT INTO {STATE_TABLE} (key, value) VALUES ('position', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE excluded.value > value",
        (position.stored(),),
    )


def schema_version(conn: Connection) -> int:
    """The applied schema version, kept in the header's ``user_version`` (one cached read)."""
    return int(conn.pragma("user_version"))


def prune(conn: Connection, older_than_ms: int) -> int:
    """Delete outcomes settled before ``older_than_ms``; returns how many went."""
    conn.execute(f"DELETE FROM {COMMANDS_TABLE} WHERE settled_at_ms < ?", (older_than_ms,))
    pruned = conn.changes()
    conn.execute(f"DELETE FROM {FAILURES_TABLE} WHERE last_at_ms < ?", (older_than_ms,))
    return int(pruned)


def command_status(conn: Connection, command_id: str) -> CommandStatus:
    """Has command ``command_id`` committed? One indexed read."""
    row = conn.execute(
        f"SELECT outcome, position, error_type, error_message FROM {COMMANDS_TABLE} WHERE id = ?",
        (command_id,),
    ).fetchone()
    if row is not None:
        return CommandStatus(
            id=command_id,
            state=row[0],
            position=Position.parse(row[1]),
            error_type=row[2],
            error_message=row[3],
        )
    failures = _failure_rows(conn, "WHERE id = ?", (command_id,))
    if failures:
        return _failure_status(failures[0])
    return CommandStatus(id=command_id, state="unknown")


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """What one database's ledger says now: where it stands and what is failing.

    ``outcomes`` counts settled commands by outcome (within the retention window);
    ``pending`` and ``in_dlq`` count failing commands; ``failures`` lists the most recent
    (at most :data:`MAX_FAILURES_LISTED`); ``blocked_by`` is the pending command most recently
    failed: FIFO holds every later command of the database behind it while SQS retries it.
    """

    position: Position
    schema_version: int
    outcomes: dict[str, int]
    pending: int
    in_dlq: int
    failures: list[CommandStatus]
    blocked_by: CommandStatus | None


def summary(conn: Connection) -> LedgerSummary:
    """The database's :class:`LedgerSummary`, read in the caller's transaction.

    One scan of the outcomes table (for the counts) and of the failures table (small: a row
    goes when its command settles, and only a group's head can fail). A file with no ledger
    yet summarises as empty.
    """
    position, version = read_state(conn)
    try:
        outcomes = {
            str(outcome): int(count)
            for outcome, count in conn.execute(
                f"SELECT outcome, count(*) FROM {COMMANDS_TABLE} GROUP BY outcome"
            )
        }
        columns = set(_columns(conn, FAILURES_TABLE))
    except Error as exc:
        if "no such table" not in str(exc):
            raise
        return LedgerSummary(position, version, {}, 0, 0, [], None)
    in_dlq = _IN_DLQ_SQL if "max_receives" in columns else "0"
    ((total, parked),) = conn.execute(
        f"SELECT count(*), coalesce(sum({in_dlq}), 0) FROM {FAILURES_TABLE}"
    ).fetchall()
    recent = _failure_rows(conn, "ORDER BY last_at_ms DESC LIMIT ?", (MAX_FAILURES_LISTED,))
    return LedgerSummary(
        position=position,
        schema_version=version,
        outcomes=outcomes,
        pending=int(str(total)) - int(str(parked)),
        in_dlq=int(str(parked)),
        failures=[_failure_status(row) for row in recent],
        blocked_by=blocker(conn),
    )


def blocker(conn: Connection) -> CommandStatus | None:
    """The pending command that failed last: the one holding the database's FIFO group."""
    newer = "max_receives" in _columns(conn, FAILURES_TABLE)  # an older file: all pending
    where = f"WHERE NOT {_IN_DLQ_SQL}" if newer else ""
    rows = _failure_rows(conn, f"{where} ORDER BY last_at_ms DESC LIMIT 1", ())
    return _failure_status(rows[0]) if rows else None
