"""Status from a reader (scripted) and from a local file; the JSON shape ``status --json``
prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from efsqlite.client.exceptions import ReadRequestError
from efsqlite.client.queues import QueueCounts
from efsqlite.client.status import (
    DatabaseStatus,
    SqliteVersions,
    StatusReport,
    database_status,
    database_status_from_file,
    reader_sqlite_version,
)
from efsqlite.core import engine
from efsqlite.core.ledger import LedgerSummary
from efsqlite.core.position import Position

from tests.support.statuses import FAILING


class Answer:
    def __init__(self, rows: list[list[Any]], position: str = "7", schema: int = 2) -> None:
        self.rows, self.position, self.schema_version = rows, position, schema


BLOCKER = FAILING
SUMMARY = LedgerSummary(Position(7), 2, {"applied": 3}, 1, 0, [BLOCKER], BLOCKER)


class ScriptedReader:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def _answer(self, key: str, db: str) -> Any:
        self.asked.append((key, db))
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def query(self, sql: str, *, db: str) -> Answer:
        return self._answer(sql, db)  # type: ignore[no-any-return]

    def database_status(self, db: str) -> LedgerSummary:
        return self._answer("database_status", db)  # type: ignore[no-any-return]


def test_database_status_through_the_reader() -> None:
    reader: Any = ScriptedReader({"database_status": SUMMARY})
    status = database_status(reader, "main")
    assert status == DatabaseStatus(
        "7", 2, {"applied": 3}, "reader", None, 1, 0, BLOCKER, [BLOCKER]
    )
    assert status.count("applied") == 3 and status.count("rejected") == 0
    assert reader.asked == [("database_status", "main")]


def test_a_refused_database_is_an_error_entry_not_an_exception(tmp_path: Path) -> None:
    refused = ReadRequestError("DatabaseNotFound", "no database named 'x'")
    reader: Any = ScriptedReader({"database_status": refused})
    status = database_status(reader, "x", tmp_path / "x.sqlite")
    assert not status.ok and status.as_dict() == {
        "error": "DatabaseNotFound: no database named 'x'"
    }
    # a local file that is not a database: the engine's error, named
    (tmp_path / "x.sqlite").write_bytes(b"not a database" * 100)
    broken = database_status(reader, "x", tmp_path / "x.sqlite")
    assert broken.error == "NotADBError: file is not a database"


def test_database_status_from_a_file_with_a_ledger(tmp_path: Path) -> None:
    from efsqlite.core.ledger import ensure_ledger, record_failure

    path = tmp_path / "main.sqlite"
    conn = engine.Connection(str(path))
    ensure_ledger(conn)
    conn.execute("PRAGMA user_version = 3")
    record_failure(
        conn,
        "c-1",
        message_id="m-1",
        error_type="SchemaNotReady",
        error_message="needs 4",
        at_ms=5,
        receive_count=5,
        max_receives=5,
    )
    conn.close()
    status = database_status_from_file(path)
    assert (status.position, status.schema_version, status.via) == ("0", 3, "file")
    # the one failure used its last receive: in the DLQ, so it blocks nothing
    assert (status.pending, status.in_dlq, status.blocked_by) == (0, 1, None)
    assert [f.state for f in status.failures] == ["in_dlq"]


def test_reader_sqlite_version_is_none_when_the_reader_refuses() -> None:
    reader: Any = ScriptedReader({"SELECT sqlite_version()": Answer([["3.54.1"]])})
    assert reader_sqlite_version(reader, "main") == "3.54.1"
    refusing: Any = ScriptedReader({"SELECT sqlite_version()": ReadRequestError("E", "no")})
    assert reader_sqlite_version(refusing, "main") is None


def test_the_report_keeps_the_status_json_shape() -> None:
    report = StatusReport(
        queue=QueueCounts(1, 2, 3),
        dlq=None,
        databases={
            "main": DatabaseStatus.from_summary(SUMMARY, "reader"),
            "x": DatabaseStatus(error="E: no"),
        },
        sqlite=SqliteVersions(local="3.54.1", reader=None),
    )
    assert report.as_dict() == {
        "queue": {"visible": 1, "in_flight": 2, "delayed": 3},
        "dlq": None,
        "databases": {
            "main": {
                "position": "7",
                "schema_version": 2,
                "outcomes": {"applied": 3},
                "pending": 1,
                "in_dlq": 0,
                "blocked_by": BLOCKER.to_json(),
                "failures": [BLOCKER.to_json()],
                "via": "reader",
            },
            "x": {"error": "E: no"},
        },
        "sqlite": {"cli": "3.54.1", "reader": None},
    }
    assert list(report.as_dict()) == ["queue", "dlq", "databases", "sqlite"]
    assert QueueCounts(1, 2, 3).held == 3
