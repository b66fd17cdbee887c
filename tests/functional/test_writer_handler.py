"""The writer handler end to end: Lambda-shaped SQS FIFO events in, rows and ledger out.

Exactly-once is checked on effects that are not idempotent (:func:`tally` adds 1 to a
counter, so a second run shows), and on each command's own ledger row: a row count over a
primary key is 1 however often a command ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import apsw
import pytest
from efsqlite.core import ledger, pagelog
from efsqlite.core.position import Position

from tests.support.events import (
    FakeLambdaContext,
    load_event,
    redelivered,
    sqs_event,
    sqs_record,
)
from tests.support.sqlite_files import open_db

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LEDGER = ledger.COMMANDS_TABLE


def put(cid: str, k: str, v: str = "x", db: str = "main", **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "id": cid,
        "db": db,
        "statements": [{"sql": "INSERT INTO kv (k, v) VALUES (?, ?)", "params": [k, v]}],
        **extra,
    }


def tally(cid: str, k: str, db: str = "main", **extra: Any) -> dict[str, Any]:
    """A command that adds 1 to counter ``k`` (starting at 1): applied twice, it reads 2."""
    sql = "INSERT INTO kv (k, v) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET v = v + 1"
    return {"v": 1, "id": cid, "db": db, "statements": [{"sql": sql, "params": [k]}], **extra}


def rows(
    data_dir: Path, sql: str, params: tuple[Any, ...] = (), db: str = "main"
) -> list[tuple[Any, ...]]:
    with open_db(data_dir / f"{db}.sqlite") as conn:
        return list(conn.execute(sql, params))


def counters(data_dir: Path, prefix: str, db: str = "main") -> dict[str, int]:
    """Each :func:`tally` counter whose key starts with ``prefix``: how often it was applied."""
    found = rows(data_dir, "SELECT k, v FROM kv WHERE k LIKE ? || '%'", (prefix,), db=db)
    return {k: int(v) for k, v in found}


def outcomes(data_dir: Path, prefix: str, db: str = "main") -> dict[str, str]:
    """The ledger's outcome of each command whose id starts with ``prefix``."""
    sql = f"SELECT id, outcome FROM {LEDGER} WHERE id LIKE ? || '%'"
    return dict(rows(data_dir, sql, (prefix,), db=db))


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def invoke(app: ModuleType, *records: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(sqs_event(*records), FakeLambdaContext())
    return response


@pytest.fixture
def app(cold_start_writer: Callable[[], ModuleType]) -> ModuleType:
    return cold_start_writer()


def test_fixture_event_from_the_aws_docs_applies(app: ModuleType, data_dir: Path) -> None:
    # GIVEN the FIFO event fixture shaped as in the Lambda developer guide
    event = load_event("sqs_fifo_event")
    # WHEN the handler runs it
    response = app.lambda_handler(event, FakeLambdaContext())
    # THEN the command is applied and nothing is handed back
    assert response == {"batchItemFailures": []}
    assert rows(data_dir, "SELECT v FROM kv WHERE k = 'a'") == [("1",)]
    assert outcomes(data_dir, "c-fixture") == {"c-fixture-1": "applied"}


def test_same_event_twice_applies_each_command_once(app: ModuleType, data_dir: Path) -> None:
    # GIVEN an event of three commands, each adding 1 to its own counter
    records = [sqs_record(tally(f"c-{i}", f"k{i}")) for i in range(3)]
    # WHEN Lambda delivers it, then redelivers the same records (visibility timeout expired)
    first = invoke(app, *records)
    second = invoke(app, *(redelivered(r) for r in records))
    # THEN both succeed and each counter went up exactly once
    assert failures(first) == failures(second) == []
    assert counters(data_dir, "k") == {"k0": 1, "k1": 1, "k2": 1}
    # AND each command has its own ledger entry, applied by the first delivery
    assert outcomes(data_dir, "c-") == {"c-0": "applied", "c-1": "applied", "c-2": "applied"}
    assert rows(data_dir, f"SELECT message_id FROM {LEDGER} ORDER BY id") == [
        (r["messageId"],) for r in records
    ]


def test_same_id_under_new_message_ids_applies_once(
    app: ModuleType, data_dir: Path, cold_start_writer: Callable[[], ModuleType]
) -> None:
    # GIVEN a command already applied, which adds 1 to a counter
    record = sqs_record(tally("c-once", "once"))
    assert failures(invoke(app, record)) == []
    # WHEN the same id comes back with a new message id and sequence number (a DLQ redrive,
    # or a producer retry after deduplication expired), to a fresh cold start
    again = redelivered(record, new_message_id=True)
    response = invoke(cold_start_writer(), again)
    # THEN it is acknowledged with no effect: the counter is still 1
    assert failures(response) == []
    assert counters(data_dir, "once") == {"once": 1}
    # AND the ledger still holds the first delivery's outcome
    assert rows(data_dir, f"SELECT outcome, message_id FROM {LEDGER} WHERE id = 'c-once'") == [
        ("applied", record["messageId"])
    ]


def test_mixed_batch_applies_valid_and_rejects_the_rest_with_reasons(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a batch mixing valid, constraint-violating, schema-invalid, unparseable and
    # unknown-command records
    records = [
        sqs_record(put("ok-1", "a1")),
        sqs_record(put("dup-key", "a1")),  # PRIMARY KEY violation
        sqs_record({"v": 1, "id": "bad-schema", "db": "main", "statements": [], "extra": 1}),
        sqs_record("{not json", message_id="m-unparseable"),
        sqs_record({"v": 1, "id": "no-such", "db": "main", "command": "nope", "args": {}}),
        sqs_record({"v": 1, "id": "bad-args", "db": "main", "command": "put", "args": {"k": ""}}),
        sqs_record(put("ok-2", "a2")),
    ]
    # WHEN the handler runs it
    response = invoke(app, *records)
    # THEN nothing is handed back: every record settled
    assert failures(response) == []
    assert rows(data_dir, "SELECT k FROM kv WHERE k LIKE 'a%' ORDER BY k") == [("a1",), ("a2",)]
    # AND each rejection is recorded with its type and a reason
    settled = dict(
        rows(
            data_dir,
            f"SELECT id, outcome || ':' || coalesce(error_type, '') FROM {ledger.COMMANDS_TABLE}",
        )
    )
    assert settled == {
        "ok-1": "applied:",
        "ok-2": "applied:",
        "dup-key": "rejected:ConstraintViolation",
        "bad-schema": "rejected:InvalidMessage",
        "message:m-unparseable": "rejected:UnparseableBody",
        "no-such": "rejected:UnknownCommand",
        "bad-args": "rejected:InvalidArgs",
    }
    # AND the unparseable body is kept as a bounded excerpt with its message id
    excerpt = rows(
        data_dir,
        f"SELECT message_id, body_excerpt FROM {LEDGER} WHERE id = 'message:m-unparseable'",
    )
    assert excerpt == [("m-unparseable", "{not json")]


def test_huge_unparseable_body_is_recorded_as_a_bounded_excerpt(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a 200 kB body that is not JSON
    record = sqs_record("x" * 200_000)
    # WHEN it is applied
    assert failures(invoke(app, record)) == []
    # THEN its ledger excerpt is bounded
    [(length,)] = rows(data_dir, f"SELECT length(body_excerpt) FROM {ledger.COMMANDS_TABLE}")
    assert length < 600


def test_failure_mid_batch_keeps_fifo_semantics(
    app: ModuleType, data_dir: Path, cold_start_writer: Callable[[], ModuleType], tmp_path: Path
) -> None:
    # GIVEN a batch whose third command needs a schema version the database lacks
    records = [
        sqs_record(tally("f-1", "f1")),
        sqs_record(tally("f-2", "f2")),
        sqs_record(tally("f-3", "f3", expect_schema=3)),
        sqs_record(tally("f-4", "f4")),
    ]
    # WHEN the handler runs it
    response = invoke(app, *records)
    # THEN the failed record and every later one are handed back, earlier ones committed
    assert failures(response) == [records[2]["messageId"], records[3]["messageId"]]
    assert counters(data_dir, "f") == {"f1": 1, "f2": 1}
    assert outcomes(data_dir, "f-") == {"f-1": "applied", "f-2": "applied"}
    # AND the failure is visible to "has my write committed?" as pending with its reason
    with open_db(data_dir / "main.sqlite") as conn:
        status = ledger.command_status(conn, "f-3")
    assert (status.state, status.error_type) == ("pending", "SchemaNotReady")

    # WHEN a migration to version 3 ships (a new cold start) and SQS redelivers
    migrations = Path(str(app.settings.migrations_dir))
    (migrations / "0003_more.sql").write_text("CREATE TABLE more (x INTEGER);")
    again = invoke(cold_start_writer(), *(redelivered(r) for r in records[2:]))
    # THEN the rest applies, each command exactly once
    assert failures(again) == []
    assert counters(data_dir, "f") == {"f1": 1, "f2": 1, "f3": 1, "f4": 1}
    assert outcomes(data_dir, "f-") == dict.fromkeys(["f-1", "f-2", "f-3", "f-4"], "applied")
    with open_db(data_dir / "main.sqlite") as conn:
        assert ledger.command_status(conn, "f-3").state == "applied"


@pytest.mark.parametrize("lock", ["exclusive", "shared"])
def test_locked_database_fails_the_whole_batch_and_applies_on_retry(
    app: ModuleType, data_dir: Path, lock: str
) -> None:
    # GIVEN the database exists, and another connection holds a lock: an exclusive one
    # (BEGIN IMMEDIATE cannot start) or a long read (COMMIT cannot get its exclusive lock)
    assert failures(invoke(app, sqs_record(tally("l-0", "l0")))) == []
    # (the same SQLite build as the writer's: a lock another library holds in this process
    # would be invisible to it)
    holder = apsw.Connection(str(data_dir / "main.sqlite"))
    if lock == "exclusive":
        holder.execute("BEGIN EXCLUSIVE")
    else:
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM kv").fetchall()
    records = [sqs_record(tally("l-1", "l1")), sqs_record(tally("l-2", "l2"))]
    try:
        # WHEN the writer tries to apply while the lock is held (busy timeout 200 ms)
        response = invoke(app, *records)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # THEN every record is handed back and nothing was applied
    assert failures(response) == [r["messageId"] for r in records]
    assert counters(data_dir, "l") == {"l0": 1}
    assert outcomes(data_dir, "l-") == {"l-0": "applied"}
    # WHEN SQS redelivers after the lock is gone
    again = invoke(app, *(redelivered(r) for r in records))
    # THEN both apply once
    assert failures(again) == []
    assert counters(data_dir, "l") == {"l0": 1, "l1": 1, "l2": 1}
    assert outcomes(data_dir, "l-") == {"l-0": "applied", "l-1": "applied", "l-2": "applied"}


def test_handler_bug_is_a_failure_not_a_rejection(app: ModuleType, data_dir: Path) -> None:
    # GIVEN a batch whose second command hits a bug in its handler
    records = [
        sqs_record(put("b-1", "b1")),
        sqs_record({"v": 1, "id": "b-2", "db": "main", "command": "explode", "args": {}}),
        sqs_record(put("b-3", "b3")),
    ]
    # WHEN the handler runs it
    response = invoke(app, *records)
    # THEN the bug fails its record and the later one; the first commits
    assert failures(response) == [records[1]["messageId"], records[2]["messageId"]]
    assert rows(data_dir, "SELECT k FROM kv WHERE k LIKE 'b%'") == [("b1",)]
    assert outcomes(data_dir, "b-") == {"b-1": "applied"}


def test_records_of_several_groups_go_to_their_own_databases(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN one event carrying records of two message groups, one of which fails
    records = [
        sqs_record(put("g-a1", "a1", db="alpha"), group="alpha"),
        sqs_record(put("g-b1", "b1", db="beta", expect_schema=99), group="beta"),
        sqs_record(put("g-a2", "a2", db="alpha"), group="alpha"),
        sqs_record(put("g-b2", "b2", db="beta"), group="beta"),
    ]
    # WHEN the handler runs it
    response = invoke(app, *records)
    # THEN alpha is fully applied, and beta's failure holds back only beta's records
    assert failures(response) == [records[1]["messageId"], records[3]["messageId"]]
    assert rows(data_dir, "SELECT k FROM kv WHERE k LIKE 'a%' ORDER BY k", db="alpha") == [
        ("a1",),
        ("a2",),
    ]
    assert outcomes(data_dir, "g-", db="alpha") == {"g-a1": "applied", "g-a2": "applied"}
    assert rows(data_dir, "SELECT count(*) FROM kv WHERE k LIKE 'b%'", db="beta") == [(0,)]
    assert outcomes(data_dir, "g-", db="beta") == {}


def test_message_group_must_match_the_body_db(app: ModuleType, data_dir: Path) -> None:
    # GIVEN a command for db 'other' sent in group 'main'
    record = sqs_record(put("wrong-group", "w", db="other"), group="main")
    # WHEN applied
    assert failures(invoke(app, record)) == []
    # THEN it is rejected in the group's database, and no 'other' database appears
    assert rows(
        data_dir, f"SELECT error_type FROM {ledger.COMMANDS_TABLE} WHERE id = 'wrong-group'"
    ) == [("WrongMessageGroup",)]
    assert not (data_dir / "other.sqlite").exists()


def test_record_with_an_invalid_group_is_handed_back_not_dropped(app: ModuleType) -> None:
    # GIVEN a record whose MessageGroupId is not a valid database name
    record = sqs_record(put("x", "x"), group="../etc")
    # WHEN the handler runs it
    response = invoke(app, record)
    # THEN it is reported failed (it will reach the DLQ), never silently acknowledged
    assert failures(response) == [record["messageId"]]


def test_packed_message_retried_after_partial_failure_skips_what_applied(
    app: ModuleType, data_dir: Path, cold_start_writer: Callable[[], ModuleType]
) -> None:
    # GIVEN a packed message whose fourth command fails (schema not ready)
    commands = [tally(f"p-{i}", f"p{i}") for i in range(6)]
    commands[3]["expect_schema"] = 3
    record = sqs_record({"v": 1, "db": "main", "commands": commands})
    # WHEN applied
    assert failures(invoke(app, record)) == [record["messageId"]]
    # THEN the three before it committed
    assert counters(data_dir, "p") == {"p0": 1, "p1": 1, "p2": 1}
    # WHEN the migration ships and the message is retried
    Path(str(app.settings.migrations_dir), "0003_more.sql").write_text("CREATE TABLE t3 (x);")
    assert failures(invoke(cold_start_writer(), redelivered(record))) == []
    # THEN every command is applied exactly once
    assert counters(data_dir, "p") == {f"p{i}": 1 for i in range(6)}
    assert outcomes(data_dir, "p-") == {f"p-{i}": "applied" for i in range(6)}


def test_packed_commands_keep_their_own_savepoints(app: ModuleType, data_dir: Path) -> None:
    # GIVEN a packed message with a rejected command between two good ones, and a duplicate id
    commands = [put("s-1", "s1"), put("s-2", "s1"), put("s-3", "s3"), put("s-1", "again")]
    record = sqs_record({"v": 1, "db": "main", "commands": commands})
    # WHEN applied
    assert failures(invoke(app, record)) == []
    # THEN the rejection undid only itself, and the repeated id was not applied twice
    # (every row but the seed: a second run of "s-1" would have added 'again')
    assert rows(data_dir, "SELECT k, v FROM kv WHERE k != 'seed' ORDER BY k") == [
        ("s1", "x"),
        ("s3", "x"),
    ]
    assert outcomes(data_dir, "") == {"s-1": "applied", "s-2": "rejected", "s-3": "applied"}


@pytest.mark.parametrize(
    ("sql", "error_type"),
    [
        (f"DELETE FROM {ledger.COMMANDS_TABLE}", "NotAllowed"),
        (f"UPDATE {ledger.STATE_TABLE} SET value = '9'", "NotAllowed"),
        ("PRAGMA foreign_keys = OFF", "NotAllowed"),
        ("PRAGMA journal_mode = WAL", "NotAllowed"),
        ("CREATE TABLE sneaky (x)", "NotAllowed"),
        ("DROP TABLE kv", "NotAllowed"),
        ("ATTACH DATABASE '/tmp/evil.sqlite' AS evil", "NotAllowed"),
        ("COMMIT", "NotAllowed"),
        ("SAVEPOINT mine", "NotAllowed"),
        # not on the function allow-list (whether or not this build registers it)
        ("SELECT load_extension('x')", "NotAllowed"),
        ("INSERT INTO kv VALUES ('m', 'n'); DELETE FROM kv", "InvalidStatement"),
        ("INSERT INTO nope VALUES (1)", "SQLError"),
        ("INSERT INTO kv (k, v) VALUES (?, ?)", "InvalidStatement"),
    ],
)
def test_commands_cannot_touch_the_ledger_or_the_connection(
    app: ModuleType, data_dir: Path, sql: str, error_type: str
) -> None:
    # GIVEN a raw statement that would tamper with the ledger, the schema or the transaction
    body = {"v": 1, "id": "evil", "db": "main", "statements": [{"sql": sql}]}
    good = sqs_record(put("good", "good"))
    # WHEN it is applied after a good command
    assert failures(invoke(app, good, sqs_record(body))) == []
    # THEN it is rejected, the good command stands and the ledger is intact
    assert rows(
        data_dir, f"SELECT outcome, error_type FROM {ledger.COMMANDS_TABLE} WHERE id = 'evil'"
    ) == [("rejected", error_type)]
    assert rows(data_dir, "SELECT v FROM kv WHERE k = 'good'") == [("x",)]
    assert outcomes(data_dir, "good") == {"good": "applied"}
    assert rows(data_dir, "PRAGMA journal_mode") == [("delete",)]
    assert not Path("/tmp/evil.sqlite").exists()


def test_conflict_clause_that_rolls_back_the_transaction_is_rejected_alone(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a command whose own SQL rolls back the whole transaction on conflict
    records = [
        sqs_record(tally("r-1", "r1")),
        sqs_record(
            {
                "v": 1,
                "id": "r-2",
                "db": "main",
                "statements": [{"sql": "INSERT OR ROLLBACK INTO kv (k, v) VALUES ('r1', 'y')"}],
            }
        ),
        sqs_record(tally("r-3", "r3")),
    ]
    # WHEN applied
    assert failures(invoke(app, *records)) == []
    # THEN the batch is rerun with that command rejected; the others apply once
    assert counters(data_dir, "r") == {"r1": 1, "r3": 1}
    assert outcomes(data_dir, "r-") == {"r-1": "applied", "r-2": "rejected", "r-3": "applied"}


def test_position_is_the_highest_settled_sequence_number(app: ModuleType, data_dir: Path) -> None:
    # GIVEN sequence numbers beyond 64 bits, the last of which fails
    seqs = ["18849496460467696128", "18849496460467696129", "98849496460467696130"]
    records = [sqs_record(put(f"q-{i}", f"q{i}"), sequence_number=s) for i, s in enumerate(seqs)]
    records[2] = sqs_record(put("q-2", "q2", expect_schema=50), sequence_number=seqs[2])
    # WHEN applied
    invoke(app, *records)
    # THEN the position is the highest *settled* one, compared as a big integer
    with open_db(data_dir / "main.sqlite") as conn:
        assert str(ledger.read_position(conn)) == seqs[1]
        # AND an older sequence number never moves it back
        conn.execute("BEGIN")
        ledger.advance_position(conn, Position.parse("5"))
        conn.execute("COMMIT")
        assert str(ledger.read_position(conn)) == seqs[1]


def test_migrations_apply_once_in_order_across_cold_starts(
    cold_start_writer: Callable[[], ModuleType], data_dir: Path
) -> None:
    # GIVEN three cold starts of the writer, each applying a command
    for i in range(3):
        app = cold_start_writer()
        assert failures(invoke(app, sqs_record(put(f"m-{i}", f"m{i}")))) == []
    # THEN the migrations ran once each, in order, and the seed row exists once
    assert rows(data_dir, f"SELECT version, name FROM {ledger.MIGRATIONS_TABLE}") == [
        (1, "create_kv"),
        (2, "accounts"),
    ]
    assert rows(data_dir, "PRAGMA user_version") == [(2,)]
    assert rows(data_dir, "SELECT v FROM kv WHERE k = 'seed'") == [("a;b",)]


def test_new_database_appears_only_once_fully_migrated(
    cold_start_writer: Callable[[], ModuleType], data_dir: Path, migrations_dir: Path
) -> None:
    # GIVEN a new database whose second migration is broken
    good = (migrations_dir / "0002_accounts.sql").read_text()
    (migrations_dir / "0002_accounts.sql").write_text("CREATE TABLE accounts (x; -- broken")
    record = sqs_record(put("n-1", "n1"))
    # WHEN the writer gets its first command
    response = invoke(cold_start_writer(), record)
    # THEN the command fails and no database file exists for readers to find half-made
    assert failures(response) == [record["messageId"]]
    assert not (data_dir / "main.sqlite").exists()
    # WHEN the migration is fixed and SQS redelivers
    (migrations_dir / "0002_accounts.sql").write_text(good)
    assert failures(invoke(cold_start_writer(), redelivered(record))) == []
    # THEN the database appears migrated with the command applied, and no staging file stays
    assert rows(data_dir, "PRAGMA user_version") == [(2,)]
    assert rows(data_dir, "SELECT v FROM kv WHERE k = 'n1'") == [("x",)]
    assert sorted(p.name for p in data_dir.iterdir()) == ["main.sqlite", "main.sqlite-pages"]


def test_staging_file_left_by_a_crash_is_rebuilt(app: ModuleType, data_dir: Path) -> None:
    # GIVEN a staging file and journal left by a writer killed while creating the database
    (data_dir / "main.sqlite.new").write_bytes(b"half a database")
    (data_dir / "main.sqlite.new-journal").write_bytes(b"half a journal")
    # AND a page log left by an earlier file of the same name
    stale = pagelog.Entry(pagelog.KIND_START, b"s" * 16, 7, 4096, 3, pagelog.NO_TRUNCATION, 0)
    (data_dir / "main.sqlite-pages").write_bytes(pagelog.MAGIC + stale.encode())
    # WHEN the next writer gets a command
    assert failures(invoke(app, sqs_record(put("s-1", "s1")))) == []
    # THEN it built the database afresh and applied the command
    assert rows(data_dir, "PRAGMA integrity_check") == [("ok",)]
    assert rows(data_dir, "SELECT v FROM kv WHERE k = 's1'") == [("x",)]
    assert sorted(p.name for p in data_dir.iterdir()) == ["main.sqlite", "main.sqlite-pages"]
    # AND the old page log is gone: the new one is one segment of this file's commits
    entries, _ = pagelog.read_log(data_dir / "main.sqlite-pages")
    assert entries and {e.segment for e in entries} != {b"s" * 16}
    assert len({e.segment for e in entries}) == 1


def test_edited_migration_fails_the_batch_instead_of_guessing(
    cold_start_writer: Callable[[], ModuleType], data_dir: Path
) -> None:
    # GIVEN a database migrated to version 2
    app = cold_start_writer()
    assert failures(invoke(app, sqs_record(put("e-0", "e0")))) == []
    # WHEN an applied migration file is edited and the writer cold-starts
    path = Path(str(app.settings.migrations_dir), "0001_create_kv.sql")
    path.write_text(path.read_text() + "\nCREATE TABLE surprise (x);")
    record = sqs_record(put("e-1", "e1"))
    response = invoke(cold_start_writer(), record)
    # THEN the record fails (retried, then DLQ) and nothing of the edit ran
    assert failures(response) == [record["messageId"]]
    assert rows(data_dir, "SELECT count(*) FROM sqlite_master WHERE name = 'surprise'") == [(0,)]


def test_transfer_invariant_holds_with_named_commands(app: ModuleType, data_dir: Path) -> None:
    # GIVEN two accounts
    setup = {
        "v": 1,
        "id": "setup",
        "db": "main",
        "statements": [
            {"sql": "INSERT INTO accounts VALUES ('a', 100)"},
            {"sql": "INSERT INTO accounts VALUES ('b', 0)"},
        ],
    }
    assert failures(invoke(app, sqs_record(setup))) == []

    # WHEN transfers run, one of which would overdraw (CHECK constraint) and one names a
    # missing account (the handler rejects it)
    def transfer(cid: str, source: str, amount: int) -> dict[str, Any]:
        args = {"source": source, "target": "b", "amount": amount}
        return sqs_record({"v": 1, "id": cid, "db": "main", "command": "transfer", "args": args})

    response = invoke(app, transfer("t1", "a", 60), transfer("t2", "a", 60), transfer("t3", "z", 1))
    # THEN the overdraw and the unknown account are rejected and the total is unchanged
    assert failures(response) == []
    assert rows(data_dir, "SELECT sum(balance) FROM accounts") == [(100,)]
    assert rows(data_dir, "SELECT id, balance FROM accounts ORDER BY id") == [("a", 40), ("b", 60)]
    settled = dict(
        rows(data_dir, f"SELECT id, coalesce(error_type, outcome) FROM {ledger.COMMANDS_TABLE}")
    )
    assert settled == {
        "setup": "applied",
        "t1": "applied",
        "t2": "ConstraintViolation",
        "t3": "NoSuchAccount",
    }


def test_packed_message_with_a_rejection_replays_one_by_one(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a packed message whose commands run together until one is rejected, with a
    # multi-statement command before it that must stay whole
    two_rows = {
        "v": 1,
        "id": "w-1",
        "db": "main",
        "statements": [
            {"sql": "INSERT INTO kv (k, v) VALUES ('w1a', 'x')"},
            {"sql": "INSERT INTO kv (k, v) VALUES ('w1b', 'x')"},
        ],
    }
    half_bad = {
        "v": 1,
        "id": "w-2",
        "db": "main",
        "statements": [
            {"sql": "INSERT INTO kv (k, v) VALUES ('w2a', 'x')"},
            {"sql": "INSERT INTO kv (k, v) VALUES ('w1a', 'dup')"},
        ],
    }
    commands = [two_rows, half_bad, put("w-3", "w3")]
    # WHEN applied
    assert failures(invoke(app, sqs_record({"v": 1, "db": "main", "commands": commands}))) == []
    # THEN the rejected command left nothing behind, and its neighbours are whole
    assert rows(data_dir, "SELECT k FROM kv WHERE k LIKE 'w%' ORDER BY k") == [
        ("w1a",),
        ("w1b",),
        ("w3",),
    ]
    assert outcomes(data_dir, "w-") == {"w-1": "applied", "w-2": "rejected", "w-3": "applied"}


def test_transaction_ending_sql_inside_a_packed_message(app: ModuleType, data_dir: Path) -> None:
    # GIVEN a packed message where the middle command's conflict clause ends the transaction
    rollback = {
        "v": 1,
        "id": "x-2",
        "db": "main",
        "statements": [{"sql": "INSERT OR ROLLBACK INTO kv (k, v) VALUES ('x1', 'y')"}],
    }
    commands = [tally("x-1", "x1"), rollback, tally("x-3", "x3")]
    # WHEN applied
    assert failures(invoke(app, sqs_record({"v": 1, "db": "main", "commands": commands}))) == []
    # THEN only that command is rejected, and the others apply once
    assert counters(data_dir, "x") == {"x1": 1, "x3": 1}
    assert outcomes(data_dir, "x-") == {"x-1": "applied", "x-2": "rejected", "x-3": "applied"}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r["attributes"].pop("SequenceNumber"),  # a standard queue, not FIFO
        lambda r: r["attributes"].update(SequenceNumber="12ab"),
        lambda r: r.pop("body"),
        lambda r: r.pop("attributes"),
    ],
)
def test_malformed_records_are_handed_back_not_raised(
    app: ModuleType, data_dir: Path, mangle: Callable[[dict[str, Any]], object]
) -> None:
    # GIVEN a good record and a record that is not a well-formed SQS FIFO record
    good = sqs_record(put("fine", "fine"))
    bad = sqs_record(put("odd", "odd"))
    mangle(bad)
    # WHEN the handler runs them
    response = invoke(app, good, bad)
    # THEN the malformed record is reported failed and the good one applied
    assert failures(response) == [bad["messageId"]]
    assert rows(data_dir, "SELECT v FROM kv WHERE k = 'fine'") == [("x",)]
    assert outcomes(data_dir, "") == {"fine": "applied"}


@pytest.mark.parametrize("disabled", ["true", "false"])
def test_custom_metrics_follow_the_templates_switch_and_the_log_keeps_the_counts(
    cold_start_writer: Callable[[], ModuleType],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    disabled: str,
) -> None:
    # GIVEN the writer cold-started as the template configures it (CustomMetrics=false sets
    # POWERTOOLS_METRICS_DISABLED=true: no custom metric is billed)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", disabled)
    app = cold_start_writer()
    capsys.readouterr()
    # WHEN it applies a batch
    response = invoke(app, sqs_record(tally("m-1", "m1")), sqs_record(tally("m-2", "m2")))
    assert failures(response) == []
    out = capsys.readouterr().out
    # THEN EMF (the "_aws" metric envelope) is printed only when metrics are on
    emf = [line for line in out.splitlines() if '"_aws"' in line]
    assert bool(emf) is (disabled == "false"), out
    # AND the "batch settled" line carries the counts either way
    [settled] = [r for r in caplog.records if r.getMessage() == "batch settled"]
    assert (settled.__dict__["applied"], settled.__dict__["rejected"]) == (2, 0)
