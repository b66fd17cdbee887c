"""The writer handler, cold-started as Lambda does, with ``EFSQLITE_DATABASES`` and
``EFSQLITE_MAX_RECEIVE_COUNT`` set: only declared databases are created, and each failure
is recorded with its receive count against the command at the head of the group."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from efsqlite.core import ledger
from efsqlite.write.settings import WriterSettings

from tests.support.events import FakeLambdaContext, sqs_event, sqs_record
from tests.support.sqlite_files import open_db

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def put(cid: str, db: str, **extra: Any) -> dict[str, Any]:
    sql = "INSERT INTO kv (k, v) VALUES (?, 'x')"
    return {"v": 1, "id": cid, "db": db, "statements": [{"sql": sql, "params": [cid]}], **extra}


@pytest.fixture
def writer(
    monkeypatch: pytest.MonkeyPatch, cold_start_writer: Callable[[], ModuleType]
) -> ModuleType:
    monkeypatch.setenv("EFSQLITE_DATABASES", "main,tenant-*")
    monkeypatch.setenv("EFSQLITE_MAX_RECEIVE_COUNT", "3")
    return cold_start_writer()


def handle(app: ModuleType, *records: dict[str, Any]) -> list[str]:
    response = app.lambda_handler(sqs_event(*records), FakeLambdaContext())
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


@pytest.mark.parametrize(
    ("declared", "db", "allowed"),
    [
        ("*", "anything", True),
        ("main,tenant-*", "main", True),
        ("main,tenant-*", "tenant-42", True),
        ("main,tenant-*", "mian", False),
        ("main,tenant-*", "tenant", False),
        ("app-?", "app-1", True),
        ("app-?", "app-10", False),
        (None, "main", False),
    ],
)
def test_declared_names_and_patterns(declared: str | None, db: str, allowed: bool) -> None:
    settings = WriterSettings(databases=declared)
    assert settings.may_create(db) is allowed


@pytest.mark.parametrize(
    "value",
    ["Main", "a b", "main,", ",main", "x" * 65, "main;drop", "../etc", "main\x00", "m\udc80"],
)
def test_a_malformed_declaration_is_refused_at_cold_start(value: str) -> None:
    from efsqlite.core.exceptions import InvalidSettingError

    with pytest.raises(InvalidSettingError, match="EFSQLITE_DATABASES"):
        WriterSettings.from_env({"EFSQLITE_DATABASES": value})


@pytest.mark.parametrize("value", ["0", "-1", "1001", "three", "1e3", "9" * 5000])
def test_a_malformed_max_receive_count_is_refused_at_cold_start(value: str) -> None:
    from efsqlite.core.exceptions import InvalidSettingError

    with pytest.raises(InvalidSettingError, match="EFSQLITE_MAX_RECEIVE_COUNT"):
        WriterSettings.from_env({"EFSQLITE_MAX_RECEIVE_COUNT": value})


def test_an_undeclared_database_fails_without_a_file(writer: ModuleType, data_dir: Path) -> None:
    # GIVEN a command for a typo of a declared database, and one for a declared pattern
    typo = sqs_record(put("c-typo", "mian"), group="mian")
    tenant = sqs_record(put("c-tenant", "tenant-7"), group="tenant-7")
    # WHEN the batch is handled
    failed = handle(writer, typo, tenant)
    # THEN only the typo fails (back to SQS, then the DLQ), typed, and no file is made for it
    assert failed == [typo["messageId"]]
    assert not list(data_dir.glob("mian*"))
    [batch] = [b for b in writer.writer.handle_event(sqs_event(typo)).batches]
    assert batch.failure_type == "UnknownDatabase"
    assert "EFSQLITE_DATABASES" in (batch.failure_message or "")
    assert (data_dir / "tenant-7.sqlite").is_file()
    assert not list(data_dir.glob("mian*"))


def test_a_failure_records_its_receive_count_and_the_dlq_limit(
    writer: ModuleType, data_dir: Path
) -> None:
    # GIVEN a database, then a command it cannot apply yet, delivered for the third time of 3
    assert handle(writer, sqs_record(put("c-1", "main"))) == []
    early = sqs_record(put("c-early", "main", expect_schema=9), receive_count=3)
    # WHEN it fails
    assert handle(writer, early) == [early["messageId"]]
    # THEN the ledger holds it as in the DLQ: its last receive was used
    with open_db(data_dir / "main.sqlite") as conn:
        status = ledger.command_status(conn, "c-early")
    assert (status.state, status.receive_count, status.receives_left) == ("in_dlq", 3, 0)


def test_a_database_whose_migrations_fail_records_why_against_its_head(
    writer: ModuleType, data_dir: Path, migrations_dir: Path, cold_start_writer: Any
) -> None:
    # GIVEN a database at its migrations, then a deployment that lacks one of them
    assert handle(writer, sqs_record(put("c-1", "main"))) == []
    shipped = sorted(migrations_dir.glob("*.sql"))
    version = len(shipped) + 1
    extra = migrations_dir / f"{version:04d}_more.sql"
    extra.write_text("CREATE TABLE more (x);")
    app = cold_start_writer()
    assert handle(app, sqs_record(put("c-2", "main"))) == []
    extra.unlink()
    older = cold_start_writer()
    # WHEN a command arrives (its second delivery)
    head = sqs_record(put("c-head", "main"), receive_count=2)
    assert handle(older, head) == [head["messageId"]]
    # THEN the ledger names it as failing with the migration error, though no batch could run
    with open_db(data_dir / "main.sqlite") as conn:
        status = ledger.command_status(conn, "c-head")
        summary = ledger.summary(conn)
    assert status.state == "pending" and status.error_type == "MigrationFailed"
    assert f"[{version}]" in (status.error_message or "")
    assert (status.receive_count, status.receives_left) == (2, 1)
    assert summary.blocked_by is not None and summary.blocked_by.id == "c-head"
    assert all(path.exists() for path in shipped)
