"""The one registry shape both named queries and named commands use, and command id checks."""

from __future__ import annotations

import pytest
from efsqlite.core.exceptions import RegistryError
from efsqlite.core.loading import load_registry
from efsqlite.core.names import MAX_COMMAND_ID_CHARS, is_command_id
from efsqlite.read.queries import QueryRegistry
from efsqlite.write.commands import CommandRegistry, load_commands
from pydantic import BaseModel


class _Args(BaseModel):
    n: int


def test_each_registry_refuses_a_name_twice_and_says_which_kind() -> None:
    queries = QueryRegistry()
    queries.add("q", "SELECT 1")
    with pytest.raises(RegistryError, match="query 'q' is registered twice"):
        queries.add("q", "SELECT 2")
    commands = CommandRegistry()
    commands.register("c", _Args, lambda ctx, args: None)
    with pytest.raises(RegistryError, match="command 'c' is registered twice"):
        commands.register("c", _Args, lambda ctx, args: None)
    assert [q.sql for q in queries] == ["SELECT 1"] and len(commands) == 1
    assert commands.get("c") is not None and commands.get("d") is None


def test_load_registry_wants_the_kind_it_is_asked_for() -> None:
    assert len(load_registry(None, QueryRegistry)) == 0
    assert len(load_commands(None)) == 0
    with pytest.raises(RegistryError, match="is a QueryRegistry, not a CommandRegistry"):
        load_commands("tests.support.reader_queries:queries")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),
        ("x" * MAX_COMMAND_ID_CHARS, True),
        ("x" * (MAX_COMMAND_ID_CHARS + 1), False),
        ("", False),
        (7, False),
        (None, False),
    ],
)
def test_is_command_id_checks_type_and_length(value: object, expected: bool) -> None:
    assert is_command_id(value) is expected
