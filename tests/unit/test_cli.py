"""The CLI's parsing and formatting, in-process; the e2e suite runs it against a stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from efsqlite.cli import main
from efsqlite.cli.common import format_table
from efsqlite.cli.importer import progress_bar
from efsqlite.client.exceptions import ImportInputError
from efsqlite.client.importer import insert_statement
from efsqlite.write.wire import message_json_schema


def test_schema_prints_the_wire_format_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == message_json_schema()


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["send", "--sql", "SELECT 1"], 2, "--db"),
        (["send", "--db", "main"], 2, "--sql"),
        (["nosuch"], 2, "invalid choice"),
        (["dev", "--sqs-port", "70000"], 2, "port"),
        (["dev", "--console-port", "x"], 2, "port"),
        (["query", "--db", "main", "--max-rows", "0", "SELECT 1"], 2, "at least 1"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], code: int, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_user_mistakes_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EFSQLITE_QUEUE_URL", raising=False)
    monkeypatch.delenv("EFSQLITE_ENDPOINTS", raising=False)
    rows = tmp_path / "rows.csv"
    rows.write_text("id,title\n1,a\n")
    cases = [
        ["send", "--data-dir", str(tmp_path), "--db", "main", "--sql", "S", "--params", "{"],
        ["send", "--data-dir", str(tmp_path), "--db", "main", "--sql", "S", "--params", "3"],
        ["query", "--data-dir", str(tmp_path), "--db", "main", "SELECT 1"],
        ["import", str(tmp_path / "none.csv"), "--db", "main", "--table", "t"],
        ["import", str(rows), "--db", "main", "--table", "bad name"],
    ]
    for argv in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("efsqlite: error: ") and err.count("\n") == 1, err
    # the last case fails on the table name, not on the file (which exists)
    assert "table name 'bad name' is not a plain identifier" in err


def test_table_formatting() -> None:
    table = format_table(["id", "note"], [["a", None], ["bb", "x" * 100]], width=10)
    lines = table.splitlines()
    assert lines[0].startswith("id ") and "NULL" in lines[2]
    assert lines[3].endswith("…") and len(lines[3]) < 30


def test_import_statement_quotes_identifiers_and_refuses_odd_ones() -> None:
    statement = insert_statement("todos", {"id": "1", "meta": {"a": 1}})
    assert statement["sql"] == 'INSERT INTO "todos" ("id", "meta") VALUES (?, ?)'
    assert statement["params"] == ["1", '{"a": 1}']
    with pytest.raises(ImportInputError, match=r"column name .* is not a plain identifier"):
        insert_statement("todos", {'x"); DROP TABLE t; --': 1})
    with pytest.raises(ImportInputError, match=r"table name .* is not a plain identifier"):
        insert_statement('t"; --', {"id": 1})
    assert "50.0%" in progress_bar(5, 10)
