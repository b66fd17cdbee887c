from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from efsqlite.core.names import MAX_COMMAND_ID_CHARS
from efsqlite.write.wire import (
    NamedCommand,
    StatementsCommand,
    message_json_schema,
    parse_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st
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
        (body(id="x" * (MAX_COMMAND_ID_CHARS + 1), statements=[{"sql": "x"}]), "id"),
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


# -- strict JSON: any input is a ValidationError, typed for how the writer settles it --------
def _kinds(text: str | bytes) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        parse_message(text)
    return {e["type"] for e in caught.value.errors()}


@pytest.mark.parametrize("version", ["1.0", "1e0", "true", '"1"'])
def test_v_is_the_integer_1_only(version: str) -> None:
    assert _kinds(body(statements=[{"sql": "x"}]).replace('"v": 1', f'"v": {version}')) == {
        "int_type"
    }


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_in_params_and_args(literal: str) -> None:
    in_params = body(statements=[{"sql": "SELECT ?", "params": ["@@"]}]).replace('"@@"', literal)
    in_args = body(command="put", args={"a": [{"b": "@@"}]}).replace('"@@"', literal)
    assert "finite_number" in _kinds(in_params)
    assert "finite_number" in _kinds(in_args)


def test_params_keep_64_bit_integers_exact_and_refuse_wider_ones() -> None:
    [command] = parse_message(body(statements=[{"sql": "x", "params": [2**63 - 1, -(2**63)]}]))
    assert isinstance(command, StatementsCommand)
    assert command.statements[0].params == [2**63 - 1, -(2**63)]
    assert "json_invalid" not in _kinds(body(statements=[{"sql": "x", "params": [2**63]}]))
    schema = message_json_schema()["$defs"]["Statement"]["properties"]["params"]
    assert {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1} in schema["anyOf"][0][
        "items"
    ]["anyOf"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (body(statements=[{"sql": "x", "params": ["@@"]}]).replace('"@@"', '"\\ud800"'), "typed"),
        (body(statements=[{"sql": "x\udc00"}]), "typed"),  # a str holding a lone surrogate
        (body(statements=[{"sql": "x"}]).encode().replace(b'"x"', b'"\xff"'), "typed"),
        (body(statements=[{"sql": "x"}]).replace('"c-1"', '"\\udfff"'), "json_invalid"),
        (body(statements=[{"sql": "x"}]).replace('"c-1"', '"\udfff"'), "json_invalid"),
        ("[" * 300 + "]" * 300, "json_invalid"),
        ("[" * 100_000, "json_invalid"),
    ],
)
def test_text_that_is_not_unicode_is_refused_and_typed(text: str | bytes, kind: str) -> None:
    # A "typed" refusal is settled under the body's id; json_invalid under the message id,
    # which is the only choice when the id itself is not storable text.
    kinds = _kinds(text)
    assert ("json_invalid" in kinds) == (kind == "json_invalid")
    if kind == "typed":
        assert kinds == {"invalid_unicode"}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(st.characters(exclude_categories=())), st.binary()))
def test_parse_message_raises_only_validation_errors(text: str | bytes) -> None:
    with contextlib.suppress(ValidationError):  # anything else fails the test
        parse_message(text)
