"""The bounded replacements of LIKE, GLOB, instr, replace and trim answer exactly as SQLite's
own functions do (results, types and errors), and refuse only what would run for seconds in
one VM step."""

from __future__ import annotations

from typing import Any

import apsw
import pytest
from efsqlite.core import singlestep
from efsqlite.core.connections import open_writer_connection
from efsqlite.read.connection import QueryLimits, ReadConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Characters that matter to the functions: wildcards, case pairs (ASCII and not), a NUL,
# multi-byte characters, brackets for GLOB classes, the escape character.
ALPHABET = "aAbBzZ%_*?[]^-\\ äÄß€\x00\U0001f600"
texts = st.text(alphabet=ALPHABET, max_size=12)
values = st.one_of(
    texts,
    st.binary(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.none(),
)
CALLS = {
    "like": 2,
    "glob": 2,
    "instr": 2,
    "replace": 3,
    "trim": 2,
    "ltrim": 2,
    "rtrim": 2,
}


def outcome(conn: apsw.Connection, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        (value,) = conn.execute(sql, args).fetchall()[0]
    except apsw.Error as exc:
        return ("error", type(exc).__name__, str(exc))
    except UnicodeDecodeError:
        # SQLite's function made text that is not UTF-8 (a blob read as text): no Python
        # caller can read it; the override refuses it as an SQL error instead.
        return ("error", "SQLError", "not valid UTF-8")
    return ("ok", type(value).__name__, value)


def same(guarded: tuple[Any, ...], plain: tuple[Any, ...]) -> bool:
    if plain == ("error", "SQLError", "not valid UTF-8"):
        return guarded[:2] == ("error", "SQLError") and "not valid UTF-8" in guarded[2]
    return guarded == plain


@pytest.fixture(scope="module")
def pair() -> tuple[apsw.Connection, apsw.Connection]:
    guarded = apsw.Connection(":memory:")
    singlestep.install(guarded)
    return guarded, apsw.Connection(":memory:")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(CALLS)),
    args=st.lists(st.one_of(texts, texts, values), min_size=3, max_size=3),
)
def test_every_override_answers_as_sqlite_does(
    pair: tuple[apsw.Connection, apsw.Connection], name: str, args: list[Any]
) -> None:
    # GIVEN a connection with the overrides and one with SQLite's own functions
    guarded, plain = pair
    call = tuple(args[: CALLS[name]])
    sql = f"SELECT {name}({', '.join('?' * len(call))})"
    # WHEN both run the same call  THEN the result, its type and any error are the same
    assert same(outcome(guarded, sql, call), outcome(plain, sql, call)), (name, call)


@settings(max_examples=300, deadline=None)
@given(value=texts, pattern=texts, escape=st.sampled_from(["\\", "a", "%", "ab", ""]))
def test_like_with_escape_and_the_operators_answer_as_sqlite_does(
    pair: tuple[apsw.Connection, apsw.Connection], value: str, pattern: str, escape: str
) -> None:
    guarded, plain = pair
    for sql, args in (
        ("SELECT ? LIKE ?", (value, pattern)),
        ("SELECT ? NOT LIKE ?", (value, pattern)),
        ("SELECT ? GLOB ?", (value, pattern)),
        ("SELECT ? LIKE ? ESCAPE ?", (value, pattern, escape)),
    ):
        assert same(outcome(guarded, sql, args), outcome(plain, sql, args)), (sql, args)


# The shapes that ran for seconds in one VM step on SQLite 3.54.1 (bench/bench_single_step.py),
# with the answer SQLite's own function gives.
HAZARDS = [
    ("SELECT ? LIKE ?", ("a" * 1_000_000, "%" + "a" * 40_000 + "b"), 0),
    ("SELECT ? GLOB ?", ("a" * 1_000_000, "*" + "a" * 40_000 + "b"), 0),
    ("SELECT ? LIKE ?", ("ab" * 500_000, "%" + "ab" * 20_000 + "%"), 1),
    ("SELECT length(trim(?, ?))", ("a" * 80_000, "b" * 79_999 + "a"), 0),
    ("SELECT instr(?, ?)", ("a" * 200_000, "a" * 99_999 + "b"), 0),
    ("SELECT length(replace(?, ?, ''))", ("a" * 400_000, "a" * 199_999 + "b"), 400_000),
]


@pytest.mark.parametrize(("sql", "args", "expected"), HAZARDS)
def test_hazardous_text_operands_take_the_linear_path(
    pair: tuple[apsw.Connection, apsw.Connection],
    monkeypatch: pytest.MonkeyPatch,
    sql: str,
    args: tuple[str, str],
    expected: int,
) -> None:
    # GIVEN a record of every call handed to SQLite's own function
    guarded, _ = pair
    handed: list[str] = []
    original = singlestep._builtin

    def spy(name: str, *rest: Any, **extra: Any) -> Any:
        handed.append(name)
        return original(name, *rest, **extra)

    monkeypatch.setattr(singlestep, "_builtin", spy)
    # (the overrides are active: a number goes to SQLite's own instr, through the spy)
    assert guarded.execute("SELECT instr(12345, 3)").fetchall() == [(3,)]
    assert handed == ["instr"]
    # WHEN a shape that took seconds in one step runs
    rows = guarded.execute(sql, args).fetchall()
    # THEN the linear path answered it, right, without SQLite's own function
    assert rows == [(expected,)]
    assert handed == ["instr"]


@pytest.mark.parametrize(
    ("sql", "args"),
    [
        ("SELECT ? LIKE ?", (b"a" * 1_000_000, b"%" + b"a" * 40_000 + b"b")),
        ("SELECT ? LIKE ?", ("a" * 1_000_000, "%" + "a" * 40_000 + "_")),
        ("SELECT ? LIKE ? ESCAPE '!'", ("a" * 1_000_000, "%" + "a" * 40_000 + "b")),
        ("SELECT trim(?, ?)", (b"a" * 80_000, b"b" * 79_999 + b"a")),
        ("SELECT trim(?, ?)", ("a" * 80_000, "".join(map(chr, range(0x10000, 0x10000 + 80_000))))),
        ("SELECT instr(?, ?)", (b"a" * 4_000_000, "a" * 2_000_000)),
    ],
)
def test_what_has_no_linear_path_is_refused_when_it_would_run_long(
    pair: tuple[apsw.Connection, apsw.Connection], sql: str, args: tuple[Any, ...]
) -> None:
    # GIVEN operands only SQLite's own function handles (blobs, '_' or ESCAPE, a huge set)
    guarded, _ = pair
    # WHEN the work estimate is past the bound  THEN "too big", the same every time
    with pytest.raises(apsw.TooBigError, match="one step"):
        guarded.execute(sql, args).fetchall()


def test_small_operands_of_any_kind_still_go_to_sqlite() -> None:
    # GIVEN the bound  WHEN a blob instr and a '_' pattern are small  THEN answered, not refused
    conn = apsw.Connection(":memory:")
    singlestep.install(conn)
    query = "SELECT instr(x'616263', 'c'), 'Abc' LIKE 'a_c', x'6162' LIKE 'ab'"
    # (blobs never match LIKE in this build: LIKE_DOESNT_MATCH_BLOBS)
    assert conn.execute(query).fetchall() == [(3, 1, 0)]
    assert singlestep.MAX_STEP_WORK >= 1_000_000


def test_replace_refuses_a_result_past_the_length_limit_before_building_it() -> None:
    # GIVEN a connection whose values are capped at 1,000 bytes
    conn = apsw.Connection(":memory:")
    conn.limit(apsw.SQLITE_LIMIT_LENGTH, 1000)
    singlestep.install(conn)
    # WHEN replace would grow a value past the cap  THEN too big, as SQLite's replace says
    with pytest.raises(apsw.TooBigError):
        conn.execute("SELECT replace(?, 'a', ?)", ("a" * 500, "bbb")).fetchall()
    assert conn.execute("SELECT length(replace(?, 'a', 'b'))", ("a" * 500,)).fetchall() == [(500,)]


def test_schema_objects_may_call_the_overrides_with_trusted_schema_off(tmp_path: Any) -> None:
    # GIVEN the writer's connection (trusted_schema=OFF) and a view and a trigger using them
    conn = open_writer_connection(tmp_path / "db.sqlite")
    conn.execute(
        "CREATE TABLE t (x TEXT, y TEXT);"
        "CREATE VIEW v AS SELECT trim(x, 'a') AS x FROM t WHERE x LIKE '%b%';"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
        "UPDATE t SET y = replace(new.x, 'b', 'c') WHERE rowid = new.rowid AND instr(new.x, 'b'); "
        "END;"
    )
    # WHEN rows go in and the view is read  THEN no "unsafe use of" error
    conn.execute("INSERT INTO t (x) VALUES ('abba')")
    assert conn.execute("SELECT x FROM v").fetchall() == [("bb",)]
    assert conn.execute("SELECT y FROM t").fetchall() == [("acca",)]


def test_the_reader_connection_has_the_overrides(tmp_path: Any) -> None:
    # GIVEN a database and the reader's hardened connection on it
    conn = open_writer_connection(tmp_path / "db.sqlite")
    conn.execute("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('x')")
    conn.close()
    reader = ReadConnection.open(tmp_path / "db.sqlite", limits=QueryLimits())
    # WHEN a caller sends the LIKE that took 28 s in one step
    result = reader.query(
        "SELECT ? LIKE ?",
        ["a" * 1_000_000, "%" + "a" * 40_000 + "b"],
        max_rows=10,
        max_bytes=10_000,
        deadline=float("inf"),
    )
    # THEN it is answered (linearly: test_hazardous_text_operands_take_the_linear_path)
    assert result.rows == [[0]]
    reader.close()
