"""What the CLI prints for people, in-process: blobs in tables, help text without reST,
one-line validation summaries, DDL labels and the ``dev`` registry warnings."""

from __future__ import annotations

import json

import pytest
from efsqlite.cli.common import format_table, plain_text
from efsqlite.cli.dev import registry_warnings
from efsqlite.client import encode_command, sql_command
from efsqlite.client.exceptions import InvalidCommandError
from efsqlite.client.values import format_blob
from efsqlite.core.sqlpolicy import ddl_statement
from efsqlite.write.wire import parse_message, summarize_validation
from pydantic import ValidationError


def test_blobs_are_hex_literals_bounded() -> None:
    table = format_table(["b", "r", "z"], [[b"\x00\x0a", {"$blob": "AAob/w=="}, bytes(500)]])
    row = table.splitlines()[2]
    assert row.startswith("x'000a' | x'000a1bff' | x'0000")
    assert row.endswith("…' (500 bytes)") and "b'" not in row
    assert len(format_blob(bytes(10_000), width=60)) == 60
    # an object that only looks like a blob stays as it is
    assert "$blob" in format_table(["o"], [[{"$blob": 1}]])


def test_plain_text_drops_rest_markup() -> None:
    text = "The ``efsqlite`` CLI, :mod:`efsqlite.client` and :func:`~a.b` and `x`."
    assert plain_text(text) == "The efsqlite CLI, efsqlite.client and a.b and x."


def _summary(body: object) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_message(json.dumps(body))
    return summarize_validation(caught.value)


def _statement(params: object) -> dict[str, object]:
    return {"v": 1, "id": "a", "db": "main", "statements": [{"sql": "S", "params": params}]}


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (
            {"v": 1, "id": "a", "db": "Bad", "statements": [{"sql": "S"}]},
            "db: a database name must match ^[a-z0-9_-]{1,64}$",
        ),
        (
            {"v": 1, "id": "a", "db": "m", "expect_schema": -1, "statements": [{"sql": "S"}]},
            "expect_schema: must be an integer ≥ 0",
        ),
        (
            _statement([[1]]),
            "statements[0].params[0]: must be a string, an integer, a boolean or a number",
        ),
        (_statement(3), "statements[0].params: must be an array or an object"),
        (
            _statement({"str": {}}),
            "statements[0].params.str: must be a string, an integer, a boolean or a number",
        ),
        (
            _statement([2**64]),
            "statements[0].params[0]: integers must fit SQLite's 64 bits: "
            "-9223372036854775808 to 9223372036854775807",
        ),
        (
            {"v": 1, "db": "m", "commands": [{"v": 1, "id": "a", "db": "B", "statements": []}]},
            "commands[0].db: a database name must match ^[a-z0-9_-]{1,64}$; "
            "commands[0].statements: must hold at least 1 item(s)",
        ),
        ({"v": 1}, "body: a message needs 'commands', 'statements' or 'command'"),
    ],
)
def test_validation_errors_are_one_line_field_and_rule(body: object, line: str) -> None:
    assert _summary(body) == line


def test_summaries_are_bounded() -> None:
    many = _statement([[i] for i in range(200)])
    line = _summary(many)
    assert line.endswith("and 195 more") and "\n" not in line
    assert len(summarize_validation(_raise(many), max_chars=80)) == 80


def _raise(body: object) -> ValidationError:
    try:
        parse_message(json.dumps(body))
    except ValidationError as exc:
        return exc
    raise AssertionError("valid")


def test_client_error_carries_the_problems() -> None:
    with pytest.raises(InvalidCommandError) as caught:
        encode_command(sql_command("bad name", "SELECT 1", id="c1"))
    assert str(caught.value) == (
        "invalid command 'c1': db: a database name must match ^[a-z0-9_-]{1,64}$"
    )
    assert [(p.loc, p.field) for p in caught.value.problems] == [(("db",), "db")]


@pytest.mark.parametrize(
    ("sql", "label"),
    [
        ("CREATE TABLE t (x)", "CREATE TABLE"),
        ("  -- why\n/* virtual */ create temp table t (x)", "CREATE TABLE"),
        ("CREATE VIRTUAL TABLE f USING fts5(x)", "CREATE VIRTUAL TABLE"),
        ("drop index i", "DROP INDEX"),
        ("INSERT INTO t VALUES (1)", None),
    ],
)
def test_ddl_statement_labels(sql: str, label: str | None) -> None:
    assert ddl_statement(sql) == label


def test_dev_registry_warnings() -> None:
    assert registry_warnings("a:b", "c:d", {}) == []
    commands, queries = registry_warnings(None, None, {})
    assert "every named command is rejected UnknownCommand" in commands
    assert "only raw-SQL commands" in commands and "only raw-SQL queries run" in queries
    (off,) = registry_warnings(None, "c:d", {"EFSQLITE_ALLOW_RAW_STATEMENTS": "false"})
    assert "no command can apply" in off
