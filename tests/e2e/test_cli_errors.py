"""User errors through the real CLI process and a running stack: one line naming the field
(or flag) and the rule; DDL rejections that point at migrations; help and tables for people;
``efsqlite dev`` warning when it runs without registries."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import COMMANDS, QUERIES, Stack, run_cli, wait_until


def _one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--db", "bad name!", "--sql", "SELECT 1"),
            "efsqlite: error: invalid command: --db 'bad name!': a database name must match "
            "^[a-z0-9_-]{1,64}$\n",
        ),
        (
            ("--db", "main", "--sql", "SELECT 1", "--expect-schema", "-1"),
            "efsqlite: error: invalid command: --expect-schema -1: must be an integer ≥ 0\n",
        ),
        (
            ("--db", "main", "--command", "no such"),
            "efsqlite: error: invalid command: --command 'no such': a command name must match "
            "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$\n",
        ),
        (
            ("--db", "main", "--sql", ""),
            "efsqlite: error: invalid command: --sql '': must not be empty\n",
        ),
        (
            ("--db", "main", "--sql", "SELECT ?", "--params", "[[1]]"),
            "efsqlite: error: invalid command: --params[0]: must be a string, an integer, "
            "a boolean or a number\n",
        ),
        (
            ("--db", "main", "--sql", "SELECT ?", "--params", "[1e400]"),
            "efsqlite: error: --params: 1e400 is not a finite number (JSON numbers are)\n",
        ),
    ],
)
def test_send_mistakes_name_the_flag_and_the_rule(
    stack: Stack, args: tuple[str, ...], line: str
) -> None:
    # GIVEN a running stack WHEN a command breaks a wire-format rule
    result = stack.cli("send", *args)
    # THEN one line names the flag, its value and the rule; no pydantic union dump; exit 1
    assert _one_line(result, 1) == line
    assert "StatementsCommand" not in result.stderr and "NamedCommand" not in result.stderr


def test_send_mistakes_need_no_running_stack(tmp_path: Path) -> None:
    # GIVEN no stack at all WHEN the database name is invalid THEN the rule, not "no stack"
    result = run_cli("send", "--data-dir", str(tmp_path), "--db", "Bad", "--sql", "SELECT 1")
    assert "--db 'Bad': a database name must match" in _one_line(result, 1)


def test_import_names_the_bad_database_flag(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,title\n1,a\n")
    result = run_cli(
        "import", str(rows), "--data-dir", str(tmp_path), "--db", "x y", "--table", "t"
    )
    assert "--db 'x y': a database name must match ^[a-z0-9_-]{1,64}$" in _one_line(result, 1)


def test_a_bad_body_is_rejected_with_the_same_one_line_rule(stack: Stack) -> None:
    # GIVEN a body a non-Python producer sent straight to SQS, a param that is not a scalar
    body = {"v": 1, "id": "raw-bad-1", "db": "main", "statements": [{"sql": "SELECT ?"}]}
    body["statements"][0]["params"] = [[1]]  # type: ignore[index]
    stack.sqs().send_message(
        QueueUrl=stack.endpoints["queue_url"],
        MessageBody=json.dumps(body),
        MessageGroupId="main",
        MessageDeduplicationId="raw-bad-1",
    )

    # WHEN its outcome is asked for through the CLI
    def settled() -> dict[str, object] | None:
        result = stack.cli("status", "--command", "raw-bad-1", "--db", "main", "--json")
        status: dict[str, object] = json.loads(result.stdout)
        return status if status["state"] == "rejected" else None

    status = wait_until(settled, timeout=30, what="the bad body to be rejected")
    # THEN the ledger holds the same one-line form the client gives, not a union dump
    assert status["error_type"] == "InvalidMessage"
    assert status["error_message"] == (
        "statements[0].params[0]: must be a string, an integer, a boolean or a number"
    )


@pytest.mark.parametrize(
    ("sql", "label"),
    [
        ("CREATE TABLE notes (id TEXT PRIMARY KEY)", "CREATE TABLE"),
        ("/* tidy */ create index todos_title ON todos (title)", "CREATE INDEX"),
        ("ALTER TABLE todos ADD COLUMN due TEXT", "ALTER TABLE"),
        ("DROP TABLE todos", "DROP TABLE"),
    ],
)
def test_ddl_in_a_command_points_at_migrations(stack: Stack, sql: str, label: str) -> None:
    # GIVEN a running stack WHEN a command carries DDL
    sent = stack.cli("send", "--db", "main", "--sql", sql, "--wait")
    # THEN it is rejected NotAllowed, saying schema changes go in a migration
    assert sent.returncode == 3, sent.stderr
    command_id = json.loads(sent.stdout)["id"]
    status = stack.cli("status", "--command", command_id, "--db", "main", "--json")
    answer = json.loads(status.stdout)
    assert answer["error_type"] == "NotAllowed"
    assert answer["error_message"].startswith(f"{label} is not allowed in a command: ")
    assert "migration" in answer["error_message"]
    assert "EFSQLITE_MIGRATIONS_DIR" in answer["error_message"]
    # AND the table form shows it too
    line = stack.cli("status", "--command", command_id, "--db", "main").stdout
    assert f"NotAllowed: {label} is not allowed in a command" in line
    # AND the schema did not change
    schema = "SELECT name FROM sqlite_schema WHERE name IN ('todos', 'notes', 'todos_title')"
    assert stack.rows(schema, min_position=json.loads(sent.stdout)["sequence_number"]) == [
        ["todos"]
    ]


def test_other_refusals_keep_sqlites_reason(stack: Stack) -> None:
    sent = stack.cli("send", "--db", "main", "--sql", "SELECT load_extension('x')", "--wait")
    assert sent.returncode == 3
    assert "NotAllowed: not authorized to use function: load_extension" in sent.stderr


def test_help_has_no_rest_markup() -> None:
    for command in ((), ("send",), ("query",), ("status",), ("import",), ("dev",)):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "`" not in result.stdout, result.stdout
        assert ":mod:" not in result.stdout and ":func:" not in result.stdout
    assert "The efsqlite command line" in run_cli("--help").stdout


def test_blobs_print_as_hex_literals(stack: Stack) -> None:
    result = stack.cli("query", "--db", "main", "SELECT x'000a1bff' AS b, zeroblob(4000) AS z")
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[2]
    assert "x'000a1bff'" in row and "$blob" not in row and "b'" not in row
    # a big one is cut, with its size
    assert re.search(r"x'(00)+…' \(4000 bytes\)", row), row
    assert len(row) < 100


class _BareStack(Stack):
    """``efsqlite dev`` with no ``--commands`` and no ``--queries``."""

    def command(self) -> list[str]:
        argv = super().command()
        for option, value in (("--commands", COMMANDS), ("--queries", QUERIES)):
            at = argv.index(option)
            assert argv[at + 1] == value
            del argv[at : at + 2]
        return argv


def test_dev_without_registries_warns_and_means_it(tmp_path: Path) -> None:
    # GIVEN a stack started with no registries
    bare = _BareStack(tmp_path / "bare")
    bare.start()
    try:
        # THEN it said so, one line each
        log = bare.log()
        warnings = [line for line in log.splitlines() if "efsqlite dev: warning:" in line]
        assert len(warnings) == 2, log
        assert "no command registry (--commands or EFSQLITE_COMMANDS)" in warnings[0]
        assert "no query registry (--queries or EFSQLITE_QUERIES)" in warnings[1]
        # AND what it says holds: a named command is rejected UnknownCommand, raw SQL applies
        named = bare.cli(
            "send", "--db", "main", "--command", "add_todo", "--args", '{"id": "n1"}', "--wait"
        )
        assert named.returncode == 3 and "UnknownCommand" in named.stderr, named.stderr
        raw = bare.cli(
            "send",
            "--db",
            "main",
            "--sql",
            "INSERT INTO todos (id, title) VALUES ('r1', 'raw')",
            "--wait",
        )
        assert raw.returncode == 0, raw.stderr
        query = bare.cli("query", "--db", "main", "--named", "todo_by_id", "--params", "{}")
        assert query.returncode == 1 and "InvalidRequest" in query.stderr
    finally:
        bare.stop()


def test_dev_with_registries_does_not_warn(stack: Stack) -> None:
    assert "warning" not in stack.log()
