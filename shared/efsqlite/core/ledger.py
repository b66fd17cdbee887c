"""The ledger: each command's outcome and the settled position, inside the database itself.

Outcomes live in the same file and the same transaction as the writes they describe, so
"applied" in the ledger and the rows in the tables can never disagree, whatever crashes.
The ledger is what makes redelivery, a new deduplication id and a DLQ redrive safe: SQS FIFO
deduplicates for only five minutes, and a redrive gives messages new ids.

DO read and write the settled position as a :class:`~efsqlite.core.position.Position` (its
module has the parse, encoding and comparison rules).
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
    last_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL
);
"""


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


#: A command's states: settled ("applied", "rejected"), "pending" (it failed at least once
#: and will be retried) or "unknown" (not seen yet: queued, in flight, or never sent).
COMMAND_STATES: tuple[CommandState, ...] = ("applied", "rejected", "pending", "unknown")
SETTLED_STATES: frozenset[CommandState] = frozenset({"applied", "rejected"})


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """A command's status: settled, or pending with its last failure, or unknown.

    The one type for it: the ledger reads it, the reader answers it
    (``efsqlite.read.answers.StatusAnswer``), the client returns it.
    """

    id: str
    state: CommandState
    position: Position | None = None
    error_type: str | None = None
    error_message: str | None = None
    attempts: int | None = None

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
        }


def ensure_ledger(conn: Connection) -> None:
    """Create the ledger tables if missing. Idempotent; runs inside the caller's transaction."""
    for statement in LEDGER_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)


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
) -> None:
    """Remember the last failure of a command that is not settled, for ``command_status``."""
    conn.execute(
        f"INSERT INTO {FAILURES_TABLE} (id, message_id, error_type, error_message, attempts, "
        "last_at_ms) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(id) DO UPDATE SET "
        "message_id = excluded.message_id, error_type = excluded.error_type, "
        "error_message = excluded.error_message, attempts = attempts + 1, "
        "last_at_ms = excluded.last_at_ms",
        (command_id, message_id, error_type, excerpt(error_message), at_ms),
    )


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
    failure = conn.execute(
        f"SELECT error_type, error_message, attempts FROM {FAILURES_TABLE} WHERE id = ?",
        (command_id,),
    ).fetchone()
    if failure is not None:
        return CommandStatus(
            id=command_id,
            state="pending",
            error_type=failure[0],
            error_message=failure[1],
            attempts=failure[2],
        )
    return CommandStatus(id=command_id, state="unknown")
