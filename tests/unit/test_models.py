from __future__ import annotations

import json
from typing import Any

import pytest
from efsqlite.models import (
    MAX_ID_LENGTH,
    NamedCommand,
    StatementsCommand,
    message_json_schema,
    parse_message,
)
from pydantic import ValidationError


def body(**fields: Any) -> str:
    return json.dumps({"v": 1, "id": "c-1", "db": "main", **fields})


def test_statements_command_parses_positional_and_named_params() -> None:
    # GIVEN a command with one positional and one named statement
    text = body(
        statements=[
            {"sql": "INSERT INTO t VALUES (?, ?, ?, ?)", "params": ["a", 1, 2.5, None]},
            {"sql": "UPDATE t SET x = :x", "params": {"x": True}},
        ]
    )
    # WHEN parsed
    [command] = parse_message(text)
    # THEN both statements keep their parameters with JSON types
    assert isinstance(command, StatementsCommand)
    assert command.statements[0].params == ["a", 1, 2.5, None]
    assert command.statements[1].params == {"x": True}


def test_named_command_and_expect_schema() -> None:
    [command] = parse_message(body(command="add_todo", args={"title": "x"}, expect_schema=3))
    assert isinstance(command, NamedCommand)
    assert (command.command, command.args, command.expect_schema) == ("add_todo", {"title": "x"}, 3)


def test_packed_message_keeps_order() -> None:
    # GIVEN a packed message of three commands for one database
    commands = [
        {"v": 1, "id": f"c-{i}", "db": "main", "statements": [{"sql": "SELECT 1"}]}
        for i in range(3)
    ]
    # WHEN parsed
    parsed = parse_message(json.dumps({"v": 1, "db": "main", "commands": commands}))
    # THEN the commands come back in order, each with its own id
    assert [c.id for c in parsed] == ["c-0", "c-1", "c-2"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (body(statements=[{"sql": "SELECT 1"}], extra=1), "extra"),
        (json.dumps({"v": 2, "id": "c", "db": "main", "statements": [{"sql": "x"}]}), "v"),
        (json.dumps({"v": 1, "id": "c", "db": "Main", "statements": [{"sql": "x"}]}), "db"),
        (json.dumps({"v": 1, "id": "c", "db": "a" * 65, "statements": [{"sql": "x"}]}), "db"),
        (body(id="x" * (MAX_ID_LENGTH + 1), statements=[{"sql": "x"}]), "id"),
        (json.dumps({"v": 1, "id": "", "db": "main", "statements": [{"sql": "x"}]}), "id"),
        (body(statements=[]), "statements"),
        (body(statements=[{"sql": "SELECT ?", "params": [[1, 2]]}]), "params"),
        (body(statements=[{"sql": "SELECT ?", "params": [{"a": 1}]}]), "params"),
        (body(statements=[{"sql": 5}]), "sql"),
        (body(command="x y"), "command"),
        (body(), "statements"),
        (body(statements=[{"sql": "x"}], expect_schema="3"), "expect_schema"),
        (body(statements=[{"sql": "x"}], expect_schema=-1), "expect_schema"),
        ("[1, 2]", "message"),
        ("{nope", "json"),
        (
            json.dumps(
                {
                    "v": 1,
                    "db": "main",
                    "commands": [{"v": 1, "id": "c", "db": "other", "statements": [{"sql": "x"}]}],
                }
            ),
            "envelope",
        ),
        (json.dumps({"v": 1, "db": "main", "commands": []}), "commands"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(text: str, fragment: str) -> None:
    # WHEN an invalid body is parsed
    with pytest.raises(ValidationError) as caught:
        parse_message(text)
    # THEN the error names what is wrong
    assert fragment in str(caught.value).lower()


def test_json_schema_covers_the_three_message_shapes() -> None:
    schema = message_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["$defs"]) >= {"PackedMessage", "StatementsCommand", "NamedCommand"}
    assert len(schema["oneOf"]) == 3
    assert schema["$defs"]["StatementsCommand"]["additionalProperties"] is False
