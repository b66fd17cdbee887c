"""Hostile commands through the real writer handler: the ledger never lies, the writer never
crashes, no command holds its group past one invocation.

Every probe command starts with a marker row (``INSERT INTO kv VALUES (<id>, ...)``) and then
does something hostile. So "the ledger agrees with the tables" is checkable for every id: the
marker row exists exactly when the ledger says ``applied``. Cases that could crash or hang the
writer run in a child process (``writer_child.py``) with a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from efsqlite.core import ledger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import FakeLambdaContext, redelivered, sqs_event, sqs_record
from tests.support.sqlite_files import open_db

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LEDGER = ledger.COMMANDS_TABLE
CHILD = Path(__file__).with_name("writer_child.py")
REPO = Path(__file__).resolve().parents[2]
#: Small enough that a runaway statement is cut in milliseconds; a plain INSERT takes < 100.
TEST_BUDGET = 200_000

SCHEMA = """
CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE guarded (k TEXT PRIMARY KEY);
CREATE TRIGGER guarded_rollback BEFORE INSERT ON guarded WHEN NEW.k LIKE 'bad%'
BEGIN SELECT RAISE(ROLLBACK, 'bad key'); END;
CREATE VIRTUAL TABLE notes USING fts3(body);
CREATE VIRTUAL TABLE docs USING fts5(body);
"""

#: Statements no command may run, whatever else it does. Each is tried after a marker insert.
REFUSED = [
    # transaction control, under any name (the writer's own savepoint name is no secret)
    "COMMIT",
    "END",
    "ROLLBACK",
    "BEGIN",
    "BEGIN IMMEDIATE",
    "commit /* sneaky */",
    "SAVEPOINT efsqlite_command",
    "RELEASE efsqlite_command",
    "RELEASE SAVEPOINT efsqlite_command",
    "ROLLBACK TO efsqlite_command",
    "ROLLBACK TRANSACTION TO SAVEPOINT efsqlite_command",
    "SAVEPOINT mine",
    # introspection virtual tables
    "SELECT sql FROM sqlite_stmt",
    "SELECT * FROM dbstat",
    "SELECT * FROM sqlite_dbpage",
    "SELECT * FROM pragma_compile_options",
    "SELECT * FROM pragma_table_info('kv')",
    "SELECT * FROM main.sqlite_stmt",
    # functions outside the allow-list
    "SELECT fts3_tokenizer('simple')",
    "SELECT load_extension('/tmp/nothing')",
    "SELECT sqlite_compileoption_get(0)",
    "SELECT sqlite_log(1, 'x')",
    # schema, pragmas, files
    "CREATE TABLE t2 (x)",
    "CREATE TEMP TABLE t3 (x)",
    "DROP TABLE kv",
    "ALTER TABLE kv ADD COLUMN c",
    "CREATE INDEX kv_v ON kv(v)",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode = WAL",
    "ATTACH 'other.sqlite' AS other",
    "VACUUM",
    "VACUUM INTO '/tmp/efsqlite-stolen.sqlite'",
    "ANALYZE",
    "REINDEX",
    # the ledger and SQLite's own tables
    f"INSERT INTO {LEDGER} (id, outcome, position, message_id, settled_at_ms) "
    "VALUES ('forged', 'applied', '0', 'm', 0)",
    f"DELETE FROM {LEDGER}",
    f"UPDATE {ledger.STATE_TABLE} SET value = '0'",
    "UPDATE sqlite_master SET sql = ''",
    "DELETE FROM sqlite_sequence",
]

#: Statements commands may run.
ALLOWED = [
    "INSERT INTO kv (k, v) SELECT 'j' || key, value FROM json_each('[1, 2]') WHERE 0",
    "INSERT INTO notes (body) VALUES ('full text, fts3')",
    "INSERT INTO docs (body) VALUES ('full text, fts5')",
    "SELECT count(*) FROM docs WHERE docs MATCH 'text'",
    "SELECT row_number() OVER (ORDER BY k), datetime('now'), json_object('a', 1) FROM kv",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
    "SELECT sum(n) FROM r",
    "SELECT k FROM kv LIMIT 1",
    "SELECT name FROM sqlite_schema",
]


def probe(cid: str, *sql: str, db: str = "main") -> dict[str, Any]:
    """A command that inserts its marker row, then runs ``sql``."""
    statements = [{"sql": "INSERT INTO kv (k, v) VALUES (?, 'marker')", "params": [cid]}]
    statements += [{"sql": text} for text in sql]
    return {"v": 1, "id": cid, "db": db, "statements": statements}


def packed(*commands: dict[str, Any], db: str = "main") -> dict[str, Any]:
    return {"v": 1, "db": db, "commands": list(commands)}


def rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with open_db(data_dir / "main.sqlite") as conn:
        return list(conn.execute(sql, params))


def outcomes(data_dir: Path) -> dict[str, tuple[str, str | None]]:
    return {
        cid: (outcome, error_type)
        for cid, outcome, error_type in rows(
            data_dir, f"SELECT id, outcome, error_type FROM {LEDGER}"
        )
    }


def assert_ledger_matches_tables(data_dir: Path, sent: list[str]) -> None:
    """Every sent id is settled, and its marker row exists exactly when it is applied."""
    settled = outcomes(data_dir)
    markers = {k for (k,) in rows(data_dir, "SELECT k FROM kv WHERE v = 'marker'")}
    assert set(sent) <= set(settled), f"unsettled: {sorted(set(sent) - set(settled))}"
    for cid in sent:
        applied = settled[cid][0] == "applied"
        assert applied == (cid in markers), f"{cid}: ledger {settled[cid]}, marker {cid in markers}"
    (check,) = rows(data_dir, "PRAGMA integrity_check")[0]
    assert check == "ok"


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


@pytest.fixture
def hostile_env(
    writer_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    migrations = tmp_path / "hostile-migrations"
    migrations.mkdir()
    (migrations / "0001_schema.sql").write_text(SCHEMA)
    env = dict(writer_env)
    env["EFSQLITE_MIGRATIONS_DIR"] = str(migrations)
    env["EFSQLITE_COMMAND_STEP_BUDGET"] = str(TEST_BUDGET)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def app(hostile_env: dict[str, str], cold_start_writer: Callable[[], ModuleType]) -> ModuleType:
    return cold_start_writer()


def invoke(app: ModuleType, *records: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(sqs_event(*records), FakeLambdaContext())
    return response


def run_child(
    env: dict[str, str],
    events: list[dict[str, Any]],
    *,
    remaining_ms: int = 60_000,
    timeout: float = 60,
) -> tuple[int, list[dict[str, Any]], str]:
    """Run the writer handler in a child process; (exit status, responses, stderr)."""
    child_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(CHILD)],
        input=json.dumps({"events": events, "remaining_ms": remaining_ms}),
        capture_output=True,
        text=True,
        env=child_env,
        timeout=timeout,
    )
    responses = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"')]
    return done.returncode, [r for r in responses if "batchItemFailures" in r], done.stderr


# -- allow-lists ------------------------------------------------------------------------------
@pytest.mark.parametrize("sql", REFUSED)
def test_refused_statement_is_rejected_and_leaves_nothing(
    app: ModuleType, data_dir: Path, sql: str
) -> None:
    # GIVEN a command that inserts its marker, then runs a refused statement; and a
    # well-behaved neighbour after it in the same batch
    records = [sqs_record(probe("bad", sql)), sqs_record(probe("good"))]
    # WHEN the writer applies the batch
    response = invoke(app, *records)
    # THEN the hostile command is rejected whole (no marker), the neighbour applies, and the
    # batch is not handed back
    assert failures(response) == []
    settled = outcomes(data_dir)
    assert settled["bad"][0] == "rejected", settled["bad"]
    assert settled["good"] == ("applied", None)
    assert_ledger_matches_tables(data_dir, ["bad", "good"])


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed_statement_applies(app: ModuleType, data_dir: Path, sql: str) -> None:
    response = invoke(app, sqs_record(probe("ok", sql)))
    assert failures(response) == []
    assert outcomes(data_dir)["ok"] == ("applied", None)
    assert_ledger_matches_tables(data_dir, ["ok"])


def test_privilege_errors_are_typed_not_allowed(app: ModuleType, data_dir: Path) -> None:
    invoke(app, sqs_record(probe("stmt", "SELECT name FROM dbstat")))
    invoke(app, sqs_record(probe("tx", "COMMIT")))
    settled = outcomes(data_dir)
    assert settled["stmt"] == ("rejected", "NotAllowed")
    assert settled["tx"] == ("rejected", "NotAllowed")


def test_exact_text_of_the_writers_own_statements_is_still_refused(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a warm writer whose statement cache holds its own savepoint and commit statements
    assert failures(invoke(app, sqs_record(packed(probe("w1"), probe("w2"))))) == []
    # WHEN commands send exactly those texts, alone (so no marker statement differs)
    texts = ["COMMIT", "BEGIN IMMEDIATE", "SAVEPOINT efsqlite_command", "RELEASE efsqlite_command"]
    records = [
        sqs_record({"v": 1, "id": f"t{i}", "db": "main", "statements": [{"sql": text}]})
        for i, text in enumerate(texts)
    ]
    records.append(sqs_record(probe("after")))
    assert failures(invoke(app, *records)) == []
    # THEN each is rejected as not allowed, and the batch's own transaction held
    settled = outcomes(data_dir)
    assert [settled[f"t{i}"] for i in range(len(texts))] == [("rejected", "NotAllowed")] * len(
        texts
    )
    assert_ledger_matches_tables(data_dir, ["w1", "w2", "after"])


def test_packed_savepoint_attack_cannot_make_the_ledger_lie(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN the attack from the issue: a packed message whose middle command tries to undo or
    # close the writer's savepoint, so that its neighbours' rows vanish while "applied"
    attack = [
        probe("p1"),
        probe("p2", "ROLLBACK TO efsqlite_command", "RELEASE efsqlite_command"),
        probe("p3", "SAVEPOINT efsqlite_command"),
        probe("p4"),
    ]
    # WHEN applied, then redelivered
    record = sqs_record(packed(*attack))
    assert failures(invoke(app, record)) == []
    assert failures(invoke(app, redelivered(record))) == []
    # THEN every outcome matches the tables
    assert_ledger_matches_tables(data_dir, ["p1", "p2", "p3", "p4"])
    assert outcomes(data_dir)["p1"][0] == outcomes(data_dir)["p4"][0] == "applied"


@pytest.mark.parametrize("query", [False, True])
@pytest.mark.parametrize(
    "sql",
    ["COMMIT", "RELEASE efsqlite_command", "SELECT name FROM dbstat", "DROP TABLE kv"],
)
def test_named_command_sql_runs_under_the_same_checks(
    hostile_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    cold_start_writer: Callable[[], ModuleType],
    data_dir: Path,
    sql: str,
    query: bool,
) -> None:
    # GIVEN a deployer's handler that runs the SQL it is given through ctx.execute/ctx.query
    monkeypatch.setenv("EFSQLITE_COMMANDS", "tests.hostile.hostile_app:registry")
    app = cold_start_writer()
    args = {"marker": "named", "sql": sql, "query": query}
    bad = {"v": 1, "id": "named", "db": "main", "command": "run_sql", "args": args}
    # WHEN it runs a refused statement between two well-behaved neighbours (the first one
    # leaves the writer's own SAVEPOINT/RELEASE statements in the statement cache)
    records = [sqs_record(probe("before")), sqs_record(bad), sqs_record(probe("after"))]
    assert failures(invoke(app, *records)) == []
    # THEN the named command is rejected whole, like a raw one, and the neighbours apply
    assert outcomes(data_dir)["named"] == ("rejected", "NotAllowed")
    assert_ledger_matches_tables(data_dir, ["before", "named", "after"])


# -- crashes ----------------------------------------------------------------------------------
def test_fts3_tokenizer_pointer_cannot_crash_the_writer(
    hostile_env: dict[str, str], data_dir: Path
) -> None:
    # GIVEN the crash from the issue: register a raw pointer as the 'simple' tokenizer, then
    # insert into an FTS table (SIGSEGV in the writer before the allow-list)
    pointer = "SELECT fts3_tokenizer('simple', x'4141414141414141')"
    event = sqs_event(
        sqs_record(probe("tok", pointer)),
        sqs_record(probe("fts", "INSERT INTO notes (body) VALUES ('crash me')")),
    )
    # WHEN the writer runs it in its own process
    status, responses, stderr = run_child(hostile_env, [event])
    # THEN it exits normally, the pointer is refused, and the FTS insert applies
    assert status == 0, stderr[-2000:]
    assert [failures(r) for r in responses] == [[]]
    settled = outcomes(data_dir)
    assert settled["tok"] == ("rejected", "NotAllowed")
    assert settled["fts"] == ("applied", None)


# -- budgets ----------------------------------------------------------------------------------
RUNAWAY = (
    "INSERT INTO kv (k, v) SELECT 'r' || n, 'x' FROM "
    "(WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r)"
)


def test_runaway_statement_is_rejected_by_its_budget_and_the_batch_settles(
    hostile_env: dict[str, str], data_dir: Path
) -> None:
    # GIVEN a batch whose middle command never ends on its own, between two valid ones
    records = [sqs_record(probe("b1")), sqs_record(probe("loop", RUNAWAY)), sqs_record(probe("b3"))]
    # WHEN the writer applies it, then the same records are redelivered
    status, responses, stderr = run_child(
        hostile_env, [sqs_event(*records), sqs_event(*(redelivered(r) for r in records))]
    )
    # THEN the runaway is rejected ResourceLimit both times, in one invocation each, and its
    # batch-mates apply once
    assert status == 0, stderr[-2000:]
    assert [failures(r) for r in responses] == [[], []]
    settled = outcomes(data_dir)
    assert settled["loop"] == ("rejected", "ResourceLimit")
    assert settled["b1"] == settled["b3"] == ("applied", None)
    assert rows(data_dir, "SELECT count(*) FROM kv WHERE k LIKE 'r%'") == [(0,)]
    assert_ledger_matches_tables(data_dir, ["b1", "loop", "b3"])


def test_runaway_named_command_is_rejected_by_its_budget(app: ModuleType, data_dir: Path) -> None:
    # The same guard covers raw SQL inside a packed message (fast path, then one by one).
    record = sqs_record(packed(probe("f1"), probe("f2", RUNAWAY), probe("f3")))
    assert failures(invoke(app, record)) == []
    settled = outcomes(data_dir)
    assert settled["f2"] == ("rejected", "ResourceLimit")
    assert_ledger_matches_tables(data_dir, ["f1", "f2", "f3"])


def test_oversized_value_is_rejected_resource_limit(app: ModuleType, data_dir: Path) -> None:
    # The default value cap is 4 MiB (EFSQLITE_MAX_VALUE_BYTES).
    big = "INSERT INTO kv (k, v) VALUES ('big', zeroblob(5 * 1048576))"
    assert failures(invoke(app, sqs_record(probe("big", big)))) == []
    assert outcomes(data_dir)["big"] == ("rejected", "ResourceLimit")
    assert_ledger_matches_tables(data_dir, ["big"])


def test_memory_hungry_command_is_rejected_by_the_heap_limit(
    hostile_env: dict[str, str], data_dir: Path
) -> None:
    # GIVEN a 16 MiB heap limit and a command that builds a 40 MB string in memory (under the
    # value cap, raised for the test, so that only the heap limit can stop it)
    env = {**hostile_env, "EFSQLITE_MAX_HEAP_MB": "16", "EFSQLITE_MAX_VALUE_BYTES": "100000000"}
    env["EFSQLITE_COMMAND_STEP_BUDGET"] = "100000000"
    hungry = (
        "SELECT length(group_concat(hex(randomblob(1000)))) FROM "
        "(WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 20000) "
        "SELECT n FROM r)"
    )
    event = sqs_event(sqs_record(probe("hungry", hungry)), sqs_record(probe("after")))
    status, responses, stderr = run_child(env, [event])
    assert status == 0, stderr[-2000:]
    assert [failures(r) for r in responses] == [[]]
    settled = outcomes(data_dir)
    assert settled["hungry"] == ("rejected", "ResourceLimit")
    assert settled["after"] == ("applied", None)


# -- lost transactions ------------------------------------------------------------------------
def conflict(cid: str) -> dict[str, Any]:
    """A command whose conflict clause rolls back the whole transaction ('seed' exists)."""
    return probe(cid, "INSERT OR ROLLBACK INTO kv (k, v) VALUES ('seed', 'again')")


def test_any_number_of_or_rollback_conflicts_settle_one_by_one(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a seed row, then a packed message of 40 conflicts interleaved with 40 valid commands
    assert failures(invoke(app, sqs_record(probe("seed")))) == []
    commands: list[dict[str, Any]] = []
    for i in range(40):
        commands += [probe(f"ok{i}"), conflict(f"c{i}")]
    record = sqs_record(packed(*commands))
    # WHEN applied (the old restart budget was 16)
    assert failures(invoke(app, record)) == []
    # THEN each conflict is rejected on its own and each valid command applied
    settled = outcomes(data_dir)
    assert all(settled[f"c{i}"] == ("rejected", "ConstraintViolation") for i in range(40))
    assert all(settled[f"ok{i}"] == ("applied", None) for i in range(40))
    assert_ledger_matches_tables(data_dir, [c["id"] for c in commands])


def test_raise_rollback_in_a_trigger_loses_only_its_command(
    app: ModuleType, data_dir: Path
) -> None:
    records = [
        sqs_record(probe("g1", "INSERT INTO guarded VALUES ('good1')")),
        sqs_record(probe("g2", "INSERT INTO guarded VALUES ('bad2')")),
        sqs_record(packed(probe("g3"), probe("g4", "INSERT INTO guarded VALUES ('bad4')"))),
        sqs_record(probe("g5", "INSERT INTO guarded VALUES ('good5')")),
    ]
    assert failures(invoke(app, *records)) == []
    settled = outcomes(data_dir)
    assert settled["g2"][0] == settled["g4"][0] == "rejected"
    assert rows(data_dir, "SELECT k FROM guarded ORDER BY k") == [("good1",), ("good5",)]
    assert_ledger_matches_tables(data_dir, ["g1", "g2", "g3", "g4", "g5"])


# -- the invocation's deadline ----------------------------------------------------------------
def test_writer_stops_before_lambda_times_out_and_commits_what_settled(
    hostile_env: dict[str, str], data_dir: Path
) -> None:
    # GIVEN a generous budget, a valid command, then one that would run for minutes, then a
    # valid one; and an invocation with 2.5 s left (the writer keeps 1 s back)
    env = {**hostile_env, "EFSQLITE_COMMAND_STEP_BUDGET": "100000000000"}
    records = [sqs_record(probe("d1")), sqs_record(probe("slow", RUNAWAY)), sqs_record(probe("d3"))]
    # WHEN the writer runs the batch
    status, responses, stderr = run_child(env, [sqs_event(*records)], remaining_ms=2500)
    # THEN it returns on its own: the first record is settled, the slow one and the rest are
    # handed back for redelivery, and nothing of the slow command is committed or recorded
    assert status == 0, stderr[-2000:]
    assert failures(responses[0]) == [records[1]["messageId"], records[2]["messageId"]]
    settled = outcomes(data_dir)
    assert settled.get("d1") == ("applied", None)
    assert "slow" not in settled and "d3" not in settled
    assert rows(data_dir, "SELECT count(*) FROM kv WHERE k LIKE 'r%'") == [(0,)]


#: Work SQLite's own functions do inside one VM step, which neither the budget nor the
#: deadline can interrupt: tens of seconds each with the built-ins (bench/bench_single_step.py
#: shapes, larger here), values built in the query and within the 4 MiB value cap.
SINGLE_STEP = {
    "like": (
        "INSERT INTO kv (k, v) VALUES ('h-like', "
        "printf('%.*c', 3000000, 'a') LIKE '%' || printf('%.*c', 40000, 'a') || 'b')",
        0,
    ),
    "trim": (
        "INSERT INTO kv (k, v) VALUES ('h-trim', "
        "length(trim(printf('%.*c', 200000, 'a'), printf('%.*c', 199999, 'b') || 'a')))",
        0,
    ),
    "replace": (
        "INSERT INTO kv (k, v) VALUES ('h-replace', length(replace(printf('%.*c', 3000000, "
        "'a'), printf('%.*c', 1500000, 'a') || 'b', '')))",
        3000000,
    ),
    "instr": (
        "INSERT INTO kv (k, v) VALUES ('h-instr', "
        "instr(printf('%.*c', 3000000, 'a'), printf('%.*c', 1500000, 'a') || 'b'))",
        0,
    ),
}


def test_single_step_work_cannot_hold_the_group_past_the_invocation(
    hostile_env: dict[str, str], data_dir: Path
) -> None:
    # GIVEN commands whose one function call ran for a minute in one VM step, between valid
    # ones, and an invocation with 5 s left (Lambda would kill it then)
    names = sorted(SINGLE_STEP)
    records = [sqs_record(probe("s0"))]
    records += [sqs_record(probe(f"s-{name}", SINGLE_STEP[name][0])) for name in names]
    records.append(sqs_record(probe("s9")))
    # WHEN the writer runs the batch (the child is killed where Lambda would kill it)
    status, responses, stderr = run_child(
        hostile_env, [sqs_event(*records)], remaining_ms=5000, timeout=5 + 5
    )
    # THEN it answered in time, everything applied once, with SQLite's own answers
    assert status == 0, stderr[-2000:]
    assert failures(responses[0]) == []
    settled = outcomes(data_dir)
    assert [settled[f"s-{name}"] for name in names] == [("applied", None)] * len(names)
    for name in names:
        assert rows(data_dir, "SELECT v FROM kv WHERE k = ?", (f"h-{name}",)) == [
            (str(SINGLE_STEP[name][1]),)
        ]
    assert_ledger_matches_tables(data_dir, ["s0", *[f"s-{n}" for n in names], "s9"])


def test_writer_with_no_time_left_starts_nothing(
    hostile_env: dict[str, str], data_dir: Path
) -> None:
    records = [sqs_record(probe("late1")), sqs_record(probe("late2"))]
    status, responses, stderr = run_child(hostile_env, [sqs_event(*records)], remaining_ms=500)
    assert status == 0, stderr[-2000:]
    assert failures(responses[0]) == [r["messageId"] for r in records]
    assert "late1" not in outcomes(data_dir)


# -- property: any mix of hostile and valid commands ------------------------------------------
_STEPS = st.one_of(
    st.sampled_from(REFUSED),
    st.sampled_from(ALLOWED),
    st.just("INSERT OR ROLLBACK INTO kv (k, v) VALUES ('seed', 'again')"),
    st.just("INSERT INTO guarded VALUES ('bad')"),
    st.just(RUNAWAY),
    st.just("INSERT INTO kv (k, v) VALUES ('seed', 'dup')"),
)


@st.composite
def batches(draw: st.DrawFn) -> list[list[list[str]]]:
    """Records; each a list of commands; each command a list of statements after its marker."""
    return draw(
        st.lists(
            st.lists(st.lists(_STEPS, max_size=3), min_size=1, max_size=6),
            min_size=1,
            max_size=5,
        )
    )


@pytest.fixture
def fresh_app(
    hostile_env: dict[str, str], cold_start_writer: Callable[[], ModuleType], data_dir: Path
) -> Iterator[Callable[[], ModuleType]]:
    def make() -> ModuleType:
        for leftover in data_dir.glob("main.sqlite*"):
            leftover.unlink()
        return cold_start_writer()

    yield make


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches())
def test_property_the_ledger_always_agrees_with_the_tables(
    fresh_app: Callable[[], ModuleType], data_dir: Path, batch: list[list[list[str]]]
) -> None:
    app = fresh_app()
    assert failures(invoke(app, sqs_record(probe("seed")))) == []
    sent: list[str] = []
    records = []
    for r, record in enumerate(batch):
        commands = []
        for c, steps in enumerate(record):
            cid = f"r{r}c{c}"
            sent.append(cid)
            commands.append(probe(cid, *steps))
        body = commands[0] if len(commands) == 1 else packed(*commands)
        records.append(sqs_record(body))
    # Nothing fails: every hostile command is rejected with a reason, in this one invocation.
    assert failures(invoke(app, *records)) == []
    assert_ledger_matches_tables(data_dir, sent)
    # And a redelivery changes nothing.
    before = rows(data_dir, "SELECT k, v FROM kv ORDER BY k")
    assert failures(invoke(app, *(redelivered(r) for r in records))) == []
    assert rows(data_dir, "SELECT k, v FROM kv ORDER BY k") == before


# -- packed messages settle per element -------------------------------------------------------
def test_invalid_elements_of_a_packed_message_are_rejected_under_their_own_ids(
    app: ModuleType, data_dir: Path
) -> None:
    # GIVEN a packed message of valid commands with bad elements among them: an unknown field,
    # a wrong db, a missing id, a non-object, NaN (not JSON) in params
    good = [probe(f"e{i}") for i in range(5)]
    bad_field = {**probe("bad-field"), "surprise": 1}
    wrong_db = probe("wrong-db", db="other")
    no_id = {"v": 1, "db": "main", "statements": [{"sql": "SELECT 1"}]}
    nan = probe("nan")
    nan["statements"][0]["params"].append(float("nan"))
    elements = [good[0], bad_field, good[1], wrong_db, good[2], no_id, good[3], 7, nan, good[4]]
    record = sqs_record(json.dumps({"v": 1, "db": "main", "commands": elements}))
    # WHEN applied
    assert failures(invoke(app, record)) == []
    # THEN every valid neighbour applies, and each bad element is rejected under its own id
    # (or message:<message id>:<index> when it has none)
    settled = outcomes(data_dir)
    assert all(settled[c["id"]] == ("applied", None) for c in good)
    assert settled["bad-field"] == ("rejected", "InvalidMessage")
    assert settled["wrong-db"] == ("rejected", "WrongDatabase")
    assert settled["nan"] == ("rejected", "InvalidMessage")
    message_id = record["messageId"]
    assert settled[f"message:{message_id}:5"] == ("rejected", "InvalidMessage")
    assert settled[f"message:{message_id}:7"] == ("rejected", "InvalidMessage")
    assert_ledger_matches_tables(data_dir, [c["id"] for c in good] + ["bad-field", "nan"])


def test_packed_message_with_a_bad_envelope_is_rejected_whole(
    app: ModuleType, data_dir: Path
) -> None:
    record = sqs_record({"v": 2, "db": "main", "commands": [probe("env1")]})
    assert failures(invoke(app, record)) == []
    assert f"message:{record['messageId']}" in outcomes(data_dir)
    assert "env1" not in outcomes(data_dir)
