"""Wire format v1: the JSON bodies producers put on the queue.

The format is public (many producers are not Python), so the pydantic models here are the
single source of its JSON Schema (``efsqlite schema``) and of ``docs/wire-format.md``.
Validation is strict: unknown fields, wrong types and out-of-range values are refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    model_validator,
)

from efsqlite.names import DB_NAME_PATTERN
from efsqlite.types import SqlValue

WIRE_VERSION = 1
#: SQS's largest message body (the queue's ``MaximumMessageSize`` must be raised to it).
MAX_MESSAGE_BYTES = 1_048_576
COMMAND_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
MAX_ID_LENGTH = 128
MAX_SQL_LENGTH = 100_000
MAX_STATEMENTS = 1000
MAX_PACKED_COMMANDS = 10_000

DbName = Annotated[str, StringConstraints(pattern=DB_NAME_PATTERN)]
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
SqlText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SQL_LENGTH)]


class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# Left-to-right unions validate about twice as fast as "smart" ones, and with strict types
# the first match is the only match (JSON true is not an int, 1 is not a str).
_Param = Annotated[SqlValue, Field(union_mode="left_to_right")]


class Statement(_StrictModel):
    """One parameterized SQL statement: ``?`` placeholders take a list, ``:name`` an object."""

    sql: SqlText
    params: Annotated[list[_Param] | dict[str, _Param], Field(union_mode="left_to_right")] = Field(
        default_factory=list
    )


class _CommandBase(_StrictModel):
    v: Literal[1] = Field(description="Wire format version.")
    id: CommandId = Field(
        description="Idempotency key, unique per database. The writer applies an id once."
    )
    db: DbName = Field(description="Target database; also the SQS MessageGroupId.")
    expect_schema: int | None = Field(
        None,
        ge=0,
        description=(
            "Minimum schema version the command needs. Below it the command fails (and is "
            "retried, then redriven) until migrations catch up."
        ),
    )


class StatementsCommand(_CommandBase):
    """Raw parameterized SQL, applied atomically in the command's own savepoint."""

    statements: list[Statement] = Field(min_length=1, max_length=MAX_STATEMENTS)


class NamedCommand(_CommandBase):
    """A command from the deployer's registry; ``args`` is checked by that command's model."""

    command: Annotated[str, StringConstraints(pattern=COMMAND_NAME_PATTERN)]
    args: dict[str, Any] = Field(default_factory=dict)


def _command_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "statements" in value:
            return "statements"
        if "command" in value:
            return "command"
        return None
    if isinstance(value, StatementsCommand):
        return "statements"
    if isinstance(value, NamedCommand):
        return "command"
    return None


# Inside a packed message a plain left-to-right union is used: a callable discriminator costs
# a Python call per command on the writer's hottest path. ``extra="forbid"`` makes the two
# shapes exclusive.
Command = Annotated[StatementsCommand | NamedCommand, Field(union_mode="left_to_right")]


class PackedMessage(_StrictModel):
    """Many commands for one database in one SQS message, applied in order."""

    v: Literal[1]
    db: DbName
    commands: list[Command] = Field(min_length=1, max_length=MAX_PACKED_COMMANDS)

    @model_validator(mode="after")
    def _commands_match_envelope(self) -> PackedMessage:
        for index, command in enumerate(self.commands):
            if command.db != self.db:
                raise ValueError(
                    f"commands[{index}].db is {command.db!r} but the envelope's db is {self.db!r}"
                )
        return self


def _message_kind(value: Any) -> str | None:
    if (isinstance(value, dict) and "commands" in value) or isinstance(value, PackedMessage):
        return "packed"
    return _command_kind(value)


Message = Annotated[
    Annotated[PackedMessage, Tag("packed")]
    | Annotated[StatementsCommand, Tag("statements")]
    | Annotated[NamedCommand, Tag("command")],
    Discriminator(
        _message_kind,
        custom_error_type="message_kind",
        custom_error_message="a message needs 'commands', 'statements' or 'command'",
    ),
]
AnyCommand = StatementsCommand | NamedCommand

MESSAGE_ADAPTER: TypeAdapter[PackedMessage | StatementsCommand | NamedCommand] = TypeAdapter(
    Message
)


def parse_message(body: str | bytes) -> list[AnyCommand]:
    """Parse one SQS body into its commands, in order. Raises ``pydantic.ValidationError``."""
    message = MESSAGE_ADAPTER.validate_json(body)
    if isinstance(message, PackedMessage):
        return list(message.commands)
    return [message]


def message_json_schema() -> dict[str, Any]:
    """The JSON Schema of an SQS message body, as published in ``docs/wire-format.md``."""
    schema = MESSAGE_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"efsqlite write message, wire format v{WIRE_VERSION}"
    return schema
