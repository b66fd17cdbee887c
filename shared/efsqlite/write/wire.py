"""Wire format v1: the JSON bodies producers put on the queue.

The format is public (many producers are not Python), so the pydantic models here are the
single source of its JSON Schema (``efsqlite schema``) and of ``docs/wire-format.md``.
Validation is strict: unknown fields, wrong types and out-of-range values are refused.

Strict JSON (RFC 8259) and strict numbers, because the parser (jiter, via pydantic) is lax:
measured with pydantic 2.14 / pydantic-core 2.50, ``validate_json`` takes ``NaN``,
``Infinity`` and ``-Infinity``, turns ``1e400`` into ``inf``, and a ``Literal[1]`` field takes
``1.0``, ``1e0`` and ``true``; an int param beyond 64 bits parsed fine and only failed when
SQLite bound it; a float branch after a failed int branch takes the int as a lossy float.

DO keep ``v`` an int-typed field pinned to 1 (not ``Literal[1]``, which compares by ``==``).
DO refuse non-finite numbers in every place a number can reach SQLite (``allow_inf_nan=False``
on params, the walk over ``args``): SQLite stores NaN as NULL, silently.
DO call :func:`parse_message` for every body: it is the one place that turns any input (not
UTF-8, lone surrogates, nesting too deep, numbers too long) into a ``ValidationError``, and
never one whose claimed id SQLite cannot store.
DO turn a ``ValidationError`` into text only with :func:`summarize_validation` (or
:func:`validation_problems`): one line of ``field: rule`` per problem, whichever union branch
pydantic tried (client, CLI and the ledger say the same).
DON'T add a callable validator that runs per command or per param on the hot path without
measuring. Measured on 10,000-command packed
messages (best of 15): statements with one float param each 37-39 ms before these checks,
38-41 ms after (the float check runs only for floats); named commands with small nested
args 53-55 ms before, 64 ms after (the walk over ``args`` is about 1 µs per command).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from efsqlite.core.names import (
    DB_NAME_PATTERN,
    MAX_COMMAND_ID_CHARS,
    REGISTERED_NAME_PATTERN,
    is_command_id,
)
from efsqlite.core.sqlpolicy import MAX_SQL_CHARS, is_text
from efsqlite.core.types import SQLITE_INT_MAX, SQLITE_INT_MIN

WIRE_VERSION = 1
#: SQS's largest message body (the queue's ``MaximumMessageSize`` must be raised to it).
MAX_MESSAGE_BYTES = 1_048_576
MAX_STATEMENTS = 1000
MAX_PACKED_COMMANDS = 10_000
#: Deepest nesting a refused body may have and still be read for its claimed id. jiter (the
#: parser) refuses anything deeper than about 200 levels itself ("recursion limit exceeded").
MAX_NESTING = 200

DbName = Annotated[str, StringConstraints(pattern=DB_NAME_PATTERN)]
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMAND_ID_CHARS)]
SqlText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SQL_CHARS)]


class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _float_only(value: Any) -> Any:
    # Strict float still takes a JSON int: without this, an int the 64-bit branch refused
    # would come back as a lossy float. Runs for float params only (ints match earlier).
    if type(value) is float:
        return value
    if type(value) is int:
        raise PydanticCustomError(
            "int_range",
            "integers must fit SQLite's 64 bits: {min} to {max}",
            {"min": SQLITE_INT_MIN, "max": SQLITE_INT_MAX},
        )
    raise PydanticCustomError("float_type", "Input should be a valid number")


Int64 = Annotated[int, Field(ge=SQLITE_INT_MIN, le=SQLITE_INT_MAX)]
_Float = Annotated[
    float,
    BeforeValidator(_float_only),
    WithJsonSchema(
        {
            "type": "number",
            "description": "A finite number with a fraction or an exponent (1.5, 2e3). JSON "
            "Schema cannot tell 1e19 from 10000000000000000000: the writer refuses a bare "
            "integer outside the 64-bit range above.",
        }
    ),
]
# Left-to-right unions validate about twice as fast as "smart" ones, and with strict types
# the first match is the only match (JSON true is not an int, 1 is not a str). Floats come
# last so that only they (and out-of-range ints) pay for the Python check above.
_Param = Annotated[str | Int64 | bool | _Float | None, Field(union_mode="left_to_right")]
#: ``v``: the int 1 exactly (a ``Literal[1]`` would also take ``1.0``, ``1e0`` and ``true``).
WireVersion = Annotated[
    int, Field(ge=WIRE_VERSION, le=WIRE_VERSION), WithJsonSchema({"const": 1, "type": "integer"})
]


class Statement(_StrictModel):
    """One parameterized SQL statement: ``?`` placeholders take a list, ``:name`` an object."""

    sql: SqlText
    params: Annotated[list[_Param] | dict[str, _Param], Field(union_mode="left_to_right")] = Field(
        default_factory=list
    )


class _CommandBase(_StrictModel):
    v: WireVersion = Field(description="Wire format version.")
    id: CommandId = Field(
        description="Idempotency key, unique per database. The writer applies an id once."
    )
    db: DbName = Field(description="Target database; also the SQS MessageGroupId.")
    expect_schema: int | None = Field(
        None,
        ge=0,
        le=SQLITE_INT_MAX,
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

    command: Annotated[str, StringConstraints(pattern=REGISTERED_NAME_PATTERN)]
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("args")
    @classmethod
    def _args_are_finite(cls, args: dict[str, Any]) -> dict[str, Any]:
        if args and not _all_finite(args):
            raise PydanticCustomError(
                "finite_number",
                "args hold NaN, Infinity or a number too large for a double; JSON numbers "
                "are finite",
            )
        return args


def _all_finite(args: dict[str, Any]) -> bool:
    """No NaN or infinity anywhere in ``args`` (iterative: nesting depth costs no stack)."""
    pending: list[Any] = [args]
    while pending:
        item = pending.pop()
        for value in item.values() if type(item) is dict else item:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # NaN and +-inf; cheaper than math.isfinite
                    return False
            elif kind is dict or kind is list:
                pending.append(value)
    return True


#: The discriminated union's tags, as they appear in an error's ``loc`` (never a field name).
_PACKED_TAG = "packed message"
_STATEMENTS_TAG = "statements command"
_NAMED_TAG = "named command"


def _command_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "statements" in value:
            return _STATEMENTS_TAG
        if "command" in value:
            return _NAMED_TAG
        return None
    if isinstance(value, StatementsCommand):
        return _STATEMENTS_TAG
    if isinstance(value, NamedCommand):
        return _NAMED_TAG
    return None


# Inside a packed message a plain left-to-right union is used: a callable discriminator costs
# a Python call per command on the writer's hottest path. ``extra="forbid"`` makes the two
# shapes exclusive.
Command = Annotated[StatementsCommand | NamedCommand, Field(union_mode="left_to_right")]


class PackedMessage(_StrictModel):
    """Many commands for one database in one SQS message, applied in order."""

    v: WireVersion
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
        return _PACKED_TAG
    return _command_kind(value)


Message = Annotated[
    Annotated[PackedMessage, Tag(_PACKED_TAG)]
    | Annotated[StatementsCommand, Tag(_STATEMENTS_TAG)]
    | Annotated[NamedCommand, Tag(_NAMED_TAG)],
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
    """Parse one SQS body into its commands, in order.

    Raises ``pydantic.ValidationError`` and nothing else, for any input. Its error types say
    how to settle the body (``efsqlite.write.apply``): ``json_invalid`` means "not readable JSON",
    rejected under ``message:<messageId>``; any other type means "read, but not a valid
    message", rejected under the ``id`` the body claims (``json.loads(body)["id"]`` when it
    is a string of 1 to 128 characters). A body whose claimed id is not Unicode text (a lone
    surrogate) is always ``json_invalid``, so that id never reaches the ledger. A body that
    is grammatical JSON but holds a lone surrogate (``"\\ud800"``, or bytes that are not
    UTF-8) is ``invalid_unicode``: refused, yet under its id when it has a usable one.
    """
    try:
        message = MESSAGE_ADAPTER.validate_json(body)
    except ValidationError as exc:
        raise _refusal(body, exc) from None
    if isinstance(message, PackedMessage):
        return list(message.commands)
    return [message]


_SURROGATE_RE = re.compile(r"(\\*)([\ud800-\udfff])")


def body_text(body: str | bytes) -> str:
    """``body`` as text SQLite can store and JSON still reads the same way.

    A Lambda event is JSON, so a body can arrive as a Python ``str`` holding lone surrogates
    (from ``"\\ud800"`` escapes), which no UTF-8 codec encodes and SQLite cannot bind.
    Bytes that are not UTF-8 are read with ``surrogateescape`` (each bad byte becomes a lone
    surrogate). Each lone surrogate is then written as its JSON escape ``\\udXXXX``: the same
    string to a JSON reader, so :func:`parse_message` refuses the body as before, with the
    same claimed id. After an odd run of backslashes (an escape in progress) it becomes
    U+FFFD instead, so an escape that was invalid stays invalid.
    """
    if isinstance(body, bytes):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            body = body.decode("utf-8", "surrogateescape")
    if body.isascii():
        return body
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub(_escape_surrogate, body)
    return body


def _escape_surrogate(match: re.Match[str]) -> str:
    backslashes, surrogate = match.group(1), match.group(2)
    if len(backslashes) % 2:
        return backslashes + "\ufffd"
    return f"{backslashes}\\u{ord(surrogate):04x}"


def _refusal(body: str | bytes, exc: ValidationError) -> ValidationError:
    """The error to raise for a refused body (see :func:`parse_message` for its contract)."""
    kinds = {error["type"] for error in exc.errors(include_url=False, include_input=False)}
    unreadable = "json_invalid" in kinds or "string_unicode" in kinds
    text = body_text(body)
    try:
        value: Any = json.loads(text)
    except ValueError:
        return exc if "string_unicode" not in kinds else _json_invalid("not JSON text")
    except RecursionError:
        # Far too deep to read; whoever reads the claimed id must not try either.
        return _json_invalid("nesting too deep")
    claimed = value.get("id") if isinstance(value, dict) else None
    if is_command_id(claimed) and not is_text(claimed):
        return _json_invalid("the claimed id holds a lone UTF-16 surrogate")
    if not unreadable:
        return exc
    where = _lone_surrogate(value)
    if where is None:
        return exc if "string_unicode" not in kinds else _json_invalid("not UTF-8 text")
    return ValidationError.from_exception_data(
        "Message",
        [
            InitErrorDetails(
                type=PydanticCustomError(
                    "invalid_unicode",
                    "lone UTF-16 surrogate in a string (a \\ud800-style escape, or bytes "
                    "that are not UTF-8): the body is not Unicode text",
                ),
                loc=where,
                input=None,
            )
        ],
    )


def _json_invalid(reason: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "Message",
        [InitErrorDetails(type="json_invalid", loc=(), input=None, ctx={"error": reason})],
    )


def _lone_surrogate(value: Any) -> tuple[str | int, ...] | None:
    """Where the first string (key or value) holding a lone surrogate is, if any.

    ``None`` too when ``value`` nests deeper than :data:`MAX_NESTING`: such a body stays
    "unreadable" (``json_invalid``), so nobody re-reads it.
    """
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    found: tuple[str | int, ...] | None = None
    while pending:
        item, where = pending.pop()
        if len(where) > MAX_NESTING:
            return None
        if isinstance(item, str):
            if found is None and not is_text(item):
                found = where
        elif isinstance(item, dict):
            for key, child in item.items():
                if found is None and not is_text(key):
                    found = (*where, key.encode("utf-8", "backslashreplace").decode())
                pending.append((child, (*where, key)))
        elif isinstance(item, list):
            pending.extend((child, (*where, index)) for index, child in enumerate(item))
    if found is None:
        return None
    return tuple(
        p.encode("utf-8", "backslashreplace").decode() if isinstance(p, str) else p for p in found
    )


def message_json_schema() -> dict[str, Any]:
    """The JSON Schema of an SQS message body, as published in ``docs/wire-format.md``."""
    schema = MESSAGE_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"efsqlite write message, wire format v{WIRE_VERSION}"
    return schema


# -- one line per ValidationError -------------------------------------------------------------
#: ``loc`` entries that name a union branch, not a field: pydantic's names for the branches of
#: a plain union (the model, or the type's schema repr) and this module's tags.
_BRANCH_NAMES = frozenset(
    {
        _PACKED_TAG,
        _STATEMENTS_TAG,
        _NAMED_TAG,
        "PackedMessage",
        "StatementsCommand",
        "NamedCommand",
        "str",
        "int",
        "bool",
        "float",
        "none",
        "bytes",
        "list",
        "dict",
        "constrained-int",
        "constrained-str",
        "constrained-float",
        "constrained-bytes",
    }
)
#: What a type error says a value must be.
_TYPE_NOUNS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}
#: How a pattern rule names the value it checks, by field.
_FIELD_NOUNS = {"db": "a database name", "command": "a command name"}
_BOUNDS = {
    "greater_than_equal": ("ge", "≥"),
    "less_than_equal": ("le", "≤"),
    "greater_than": ("gt", ">"),
    "less_than": ("lt", "<"),
}
#: Longest summary :func:`summarize_validation` returns (the ledger keeps an excerpt anyway).
MAX_SUMMARY_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where (``loc``, with union branches left out), as text
    (``field``: ``db``, ``statements[0].params[1]``), and the rule it breaks."""

    loc: tuple[str | int, ...]
    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


def _is_branch(loc: Sequence[str | int], index: int, *, key_first: bool) -> bool:
    part = loc[index]
    if not isinstance(part, str) or (index == 0 and key_first):
        return False  # an index, or a key of a dict-typed union branch, whatever it says
    return part in _BRANCH_NAMES or "[" in part


def _field(loc: Sequence[str | int], root: str) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or root


def _rule(error: ErrorDetails, loc: tuple[str | int, ...]) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in _TYPE_NOUNS:
        return f"must be {_TYPE_NOUNS[kind]}"
    if kind == "string_pattern_mismatch":
        name = loc[-1] if loc else None
        noun = _FIELD_NOUNS.get(name, "") if isinstance(name, str) else ""
        return f"{noun + ' ' if noun else ''}must match {ctx.get('pattern')}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        value = error.get("input")
        what = "an integer " if type(value) is int else ""
        return f"must be {what}{sign} {ctx.get(key)}"
    if kind == "string_too_short":
        least = ctx.get("min_length")
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        return f"must hold at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must hold at most {ctx.get('max_length')} items"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "json_invalid":
        return f"not valid JSON: {ctx.get('error', error['msg'])}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _branch_score(errors: Sequence[tuple[tuple[str | int, ...], ErrorDetails]]) -> int:
    """How badly a union branch missed: a wrong type at its root is no match at all; each
    missing or unknown field directly under it a near miss; anything deeper, a match."""
    score = 0
    for rest, error in errors:
        if not rest and error["type"] in _TYPE_NOUNS:
            score += 100
        elif len(rest) == 1 and error["type"] in ("missing", "extra_forbidden"):
            score += 1
    return score


def _collapse(
    errors: Sequence[tuple[tuple[str | int, ...], ErrorDetails]], *, key_first: bool = False
) -> list[tuple[tuple[str | int, ...], ErrorDetails]]:
    """Keep, for every union, only the errors of the branches that came closest.

    ``key_first``: each ``loc`` starts with a dict key (the errors of a ``dict[...]`` branch).
    """
    out: list[tuple[tuple[str | int, ...], ErrorDetails]] = []
    # prefix before the first branch name -> branch name -> (rest of loc, error)
    unions: dict[tuple[str | int, ...], dict[str, list[tuple[tuple[str | int, ...], Any]]]] = {}
    order: list[tuple[str | int, ...] | None] = []
    for loc, error in errors:
        cut = next((i for i in range(len(loc)) if _is_branch(loc, i, key_first=key_first)), None)
        if cut is None:
            out.append((loc, error))
            order.append(None)
            continue
        prefix = loc[:cut]
        if prefix not in unions:
            unions[prefix] = {}
            order.append(prefix)
        unions[prefix].setdefault(str(loc[cut]), []).append((loc[cut + 1 :], error))
    result: list[tuple[tuple[str | int, ...], ErrorDetails]] = []
    plain = iter(out)
    for at in order:
        if at is None:
            result.append(next(plain))
            continue
        branches = unions[at]
        scores = {name: _branch_score(found) for name, found in branches.items()}
        best = min(scores.values())
        for name, found in branches.items():
            if scores[name] == best:
                keyed = name.startswith("dict[")
                result.extend(
                    (at + rest, error) for rest, error in _collapse(found, key_first=keyed)
                )
    return result


def validation_problems(exc: ValidationError) -> list[Problem]:
    """``exc``'s problems, one per field, in order: for a union, only what the closest
    branches say (a type mismatch in every branch reads ``must be a string or an integer``)."""
    errors = [(tuple(e["loc"]), e) for e in exc.errors(include_url=False)]
    grouped: dict[tuple[str | int, ...], list[ErrorDetails]] = {}
    for loc, error in _collapse(errors):
        grouped.setdefault(loc, []).append(error)
    problems: list[Problem] = []
    for loc, found in grouped.items():
        field = _field(loc, "")
        specific = [e for e in found if e["type"] not in _TYPE_NOUNS]
        if specific:
            # A branch whose type matched says what is wrong; the last is the most lenient.
            rule = _rule(specific[-1], loc)
        else:
            nouns = list(dict.fromkeys(_TYPE_NOUNS[e["type"]] for e in found))
            rule = "must be " + (
                nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]
            )
        problems.append(Problem(loc, field, rule))
    return problems


def summarize_validation(
    exc: ValidationError, *, root: str = "body", limit: int = 5, max_chars: int = MAX_SUMMARY_CHARS
) -> str:
    """``exc`` as one line: ``field: rule; field: rule; and N more``, at most ``max_chars``.

    ``root`` names the whole input, for a problem with no field (``body: not valid JSON``).
    """
    problems = validation_problems(exc)
    parts = [f"{p.field or root}: {p.rule}" for p in problems[:limit]]
    if len(problems) > limit:
        parts.append(f"and {len(problems) - limit} more")
    text = "; ".join(parts).replace("\n", " ")
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
