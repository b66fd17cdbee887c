"""The ledger's failures: receive counts, the DLQ state, the summary, and the upgrade of a
file written before those columns existed."""

from __future__ import annotations

from pathlib import Path

import pytest
from efsqlite.core import engine, ledger
from efsqlite.core.position import Position

#: The failures table as the first release created it (no first_at_ms, receive counts).
OLD_FAILURES = """CREATE TABLE _efsqlite_failures (
    id TEXT PRIMARY KEY NOT NULL, message_id TEXT NOT NULL, error_type TEXT NOT NULL,
    error_message TEXT NOT NULL, attempts INTEGER NOT NULL, last_at_ms INTEGER NOT NULL
) WITHOUT ROWID"""


@pytest.fixture
def conn(tmp_path: Path) -> engine.Connection:
    connection = engine.Connection(str(tmp_path / "main.sqlite"))
    ledger.ensure_ledger(connection)
    return connection


def fail(conn: engine.Connection, command_id: str, at: int, received: int, most: int) -> None:
    ledger.record_failure(
        conn,
        command_id,
        message_id=f"m-{command_id}-{received}",
        error_type="SchemaNotReady",
        error_message=f"try {received}",
        at_ms=at,
        receive_count=received,
        max_receives=most,
    )


def test_a_failure_counts_receives_down_to_the_dlq(conn: engine.Connection) -> None:
    # GIVEN a command that fails on its first and second receive of five
    fail(conn, "c1", at=1000, received=1, most=5)
    fail(conn, "c1", at=2000, received=2, most=5)
    # THEN it is pending, with three receives left, failing since its first failure
    status = ledger.command_status(conn, "c1")
    assert (status.state, status.attempts, status.receive_count) == ("pending", 2, 2)
    assert (status.receives_left, status.failing_since_ms, status.last_failed_ms) == (3, 1000, 2000)
    assert status.error_message == "try 2" and status.failing and not status.settled
    # WHEN it fails on its last receive  THEN it is in the DLQ
    fail(conn, "c1", at=3000, received=5, most=5)
    parked = ledger.command_status(conn, "c1")
    assert (parked.state, parked.receives_left, parked.failing_since_ms) == ("in_dlq", 0, 1000)
    # WHEN a redriven copy (receive count back to 1) fails again  THEN it is pending again
    fail(conn, "c1", at=4000, received=1, most=5)
    assert ledger.command_status(conn, "c1").state == "pending"


def test_without_max_receives_a_failure_stays_pending(conn: engine.Connection) -> None:
    ledger.record_failure(
        conn, "c1", message_id="m", error_type="E", error_message="m", at_ms=1, receive_count=9
    )
    status = ledger.command_status(conn, "c1")
    assert (status.state, status.receive_count, status.receives_left) == ("pending", 9, None)


def test_the_summary_counts_and_names_the_blocker(conn: engine.Connection) -> None:
    # GIVEN settled commands, one parked in the DLQ and two pending (one stale, one recent)
    ledger.record_outcomes(
        conn,
        [
            ledger.LedgerEntry("a", "applied", "5", "m-a"),
            ledger.LedgerEntry("r", "rejected", "6", "m-r"),
        ],
        settled_at_ms=1,
    )
    ledger.advance_position(conn, Position(6))
    fail(conn, "parked", at=500, received=3, most=3)
    fail(conn, "stale", at=100, received=1, most=3)
    fail(conn, "head", at=900, received=2, most=3)
    # WHEN summarised
    found = ledger.summary(conn)
    # THEN the counts come from the ledger and the most recently failed pending one blocks
    assert (found.position, found.outcomes) == (Position(6), {"applied": 1, "rejected": 1})
    assert (found.pending, found.in_dlq) == (2, 1)
    assert found.blocked_by is not None and found.blocked_by.id == "head"
    assert [s.id for s in found.failures] == ["head", "parked", "stale"]
    # AND settling a command removes its failure
    ledger.clear_failures(conn, ["head", "stale"])
    after = ledger.summary(conn)
    assert (after.pending, after.in_dlq, after.blocked_by) == (0, 1, None)


def test_a_file_without_a_ledger_summarises_as_empty(tmp_path: Path) -> None:
    bare = engine.Connection(str(tmp_path / "bare.sqlite"))
    found = ledger.summary(bare)
    assert (found.position, found.pending, found.failures, found.blocked_by) == (
        Position.ZERO,
        0,
        [],
        None,
    )


def test_an_older_failures_table_is_read_then_upgraded(tmp_path: Path) -> None:
    # GIVEN a file whose failures table has the first release's columns, with one row
    conn = engine.Connection(str(tmp_path / "old.sqlite"))
    conn.execute(OLD_FAILURES)
    for statement in ledger.LEDGER_DDL.split(";"):
        if statement.strip() and "_efsqlite_failures" not in statement.split("(")[0]:
            conn.execute(statement)
    conn.execute("INSERT INTO _efsqlite_failures VALUES ('c1', 'm', 'E', 'old', 2, 50)")
    # WHEN a reader asks before any newer writer opened it  THEN the row reads, pending
    old = ledger.command_status(conn, "c1")
    assert (old.state, old.attempts, old.receive_count, old.failing_since_ms) == (
        "pending",
        2,
        None,
        50,
    )
    assert ledger.summary(conn).pending == 1
    # WHEN a newer writer ensures the ledger  THEN the columns are added and used
    ledger.ensure_ledger(conn)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(_efsqlite_failures)")}
    assert {"first_at_ms", "receive_count", "max_receives"} <= columns
    fail(conn, "c1", at=60, received=4, most=4)
    new = ledger.command_status(conn, "c1")
    assert (new.state, new.attempts, new.failing_since_ms) == ("in_dlq", 3, 60)
    ledger.ensure_ledger(conn)  # idempotent
