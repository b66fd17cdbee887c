"""The reader's answers, typed: one serializer for the reader and one decoder for the client.

Every reader answer is one of four shapes (``docs/reader.md`` has the JSON):

- :class:`QueryResult`: columns, rows and the position and schema version they were read at;
- :class:`StatusAnswer`: one command's :class:`~efsqlite.core.ledger.CommandStatus` and the
  database's current position;
- :class:`DatabaseStatusAnswer`: a database's :class:`~efsqlite.core.ledger.LedgerSummary`
  (outcome counts, failing commands, the command blocking its group);
- :class:`ErrorAnswer`: ``{"error": {"type", "message", "retryable", ...}}``, its ``type`` one
  of :data:`efsqlite.core.errors.ERROR_TYPES`.

The reader builds these and calls :meth:`to_json` at the Lambda boundary; the client calls
:func:`decode` on what came back, so both ends share one definition of each field.

DO add a field here, in both directions, and in ``docs/reader.md``: the round-trip test in
``tests/unit/test_read_answers.py`` holds the two directions together.
DON'T accept a second spelling of a key in :func:`decode`: a reader that answers another
shape is a bug to report (:class:`AnswerFormatError`), not to guess around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from efsqlite.core.exceptions import EfsqliteError
from efsqlite.core.ledger import COMMAND_STATES, CommandStatus, LedgerSummary
from efsqlite.core.position import InvalidPositionError, Position
from efsqlite.core.types import CommandState


class AnswerFormatError(EfsqliteError, ValueError):
    """A reader answer does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of one query, read at ``position`` and ``schema_version``.

    ``truncated``: a row or byte cap cut the rows short. ``stale``: a snapshot older than the
    source answered, because the source could not be read in time (see ``docs/reader.md``).
    """

    columns: list[str]
    rows: list[list[Any]]
    position: Position
    schema_version: int
    truncated: bool = False
    stale: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "position": str(self.position),
            "schema_version": self.schema_version,
            "truncated": self.truncated,
            "stale": self.stale,
        }

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> QueryResult:
        columns, rows = answer.get("columns"), answer.get("rows")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise AnswerFormatError("a query answer's 'columns' must be a list of names")
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise AnswerFormatError("a query answer's 'rows' must be a list of lists")
        return cls(
            columns=list(columns),
            rows=[list(r) for r in rows],
            position=_position(answer.get("position"), "position"),
            schema_version=_int(answer.get("schema_version"), "schema_version"),
            truncated=_bool(answer.get("truncated"), "truncated"),
            stale=_bool(answer.get("stale"), "stale"),
        )


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """One command's status in ``db``, and the position the reader looked at."""

    db: str
    status: CommandStatus
    current_position: Position
    stale: bool = False
    #: For a command not seen yet: the failing command its database's group is waiting on.
    blocked_by: CommandStatus | None = None

    def to_json(self) -> dict[str, Any]:
        status = self.status
        answer: dict[str, Any] = {
            "db": self.db,
            "command_id": status.id,
            "status": status.state,
            "current_position": str(self.current_position),
            "stale": self.stale,
        }
        if status.position is not None:
            answer["position"] = str(status.position)
        if status.state == "rejected":
            answer["reason"] = {"type": status.error_type, "message": status.error_message}
        elif status.failing:
            answer["last_failure"] = _failure_json(status)
        if self.blocked_by is not None:
            answer["blocked_by"] = _failing_json(self.blocked_by)
        return answer

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> StatusAnswer:
        state = answer.get("status")
        if state not in COMMAND_STATES:
            raise AnswerFormatError(f"a status answer's 'status' must be one of {COMMAND_STATES}")
        detail = answer.get("reason") if state == "rejected" else answer.get("last_failure")
        if detail is not None and not isinstance(detail, Mapping):
            raise AnswerFormatError("a status answer's failure detail must be an object")
        detail = detail or {}
        position = answer.get("position")
        blocked = answer.get("blocked_by")
        return cls(
            db=_text(answer.get("db"), "db"),
            status=_status(
                _text(answer.get("command_id"), "command_id"),
                state,
                detail,
                position=None if position is None else _position(position, "position"),
            ),
            current_position=_position(answer.get("current_position"), "current_position"),
            stale=_bool(answer.get("stale"), "stale"),
            blocked_by=None if blocked is None else _failing_from_json(blocked),
        )


@dataclass(frozen=True, slots=True)
class DatabaseStatusAnswer:
    """One database's ledger summary, read from the source: counts, failures, a blocked group."""

    db: str
    summary: LedgerSummary

    def to_json(self) -> dict[str, Any]:
        found = self.summary
        return {
            "db": self.db,
            "position": str(found.position),
            "schema_version": found.schema_version,
            "outcomes": dict(found.outcomes),
            "pending": found.pending,
            "in_dlq": found.in_dlq,
            "blocked_by": None if found.blocked_by is None else _failing_json(found.blocked_by),
            "failures": [_failing_json(status) for status in found.failures],
        }

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> DatabaseStatusAnswer:
        outcomes = answer.get("outcomes")
        if not isinstance(outcomes, Mapping):
            raise AnswerFormatError("a database status answer's 'outcomes' must be an object")
        failures = answer.get("failures")
        if not isinstance(failures, list):
            raise AnswerFormatError("a database status answer's 'failures' must be a list")
        blocked = answer.get("blocked_by")
        return cls(
            db=_text(answer.get("db"), "db"),
            summary=LedgerSummary(
                position=_position(answer.get("position"), "position"),
                schema_version=_int(answer.get("schema_version"), "schema_version"),
                outcomes={_text(k, "outcome"): _int(v, "count") for k, v in outcomes.items()},
                pending=_int(answer.get("pending"), "pending"),
                in_dlq=_int(answer.get("in_dlq"), "in_dlq"),
                failures=[_failing_from_json(item) for item in failures],
                blocked_by=None if blocked is None else _failing_from_json(blocked),
            ),
        )


def _failure_json(status: CommandStatus) -> dict[str, Any]:
    """A failing command's last failure, as status answers nest it (``last_failure``)."""
    return {
        "type": status.error_type,
        "message": status.error_message,
        "attempts": status.attempts,
        "receive_count": status.receive_count,
        "receives_left": status.receives_left,
        "failing_since_ms": status.failing_since_ms,
        "last_failed_ms": status.last_failed_ms,
    }


def _status(
    command_id: str,
    state: CommandState,
    detail: Mapping[str, Any],
    *,
    position: Position | None = None,
) -> CommandStatus:
    """A status from its ``reason`` or ``last_failure`` object (every field optional)."""

    def count(name: str) -> int | None:
        value = detail.get(name)
        return None if value is None else _int(value, name)

    return CommandStatus(
        id=command_id,
        state=state,
        position=position,
        error_type=_optional_text(detail.get("type"), "type"),
        error_message=_optional_text(detail.get("message"), "message"),
        attempts=count("attempts"),
        receive_count=count("receive_count"),
        receives_left=count("receives_left"),
        failing_since_ms=count("failing_since_ms"),
        last_failed_ms=count("last_failed_ms"),
    )


def _failing_json(status: CommandStatus) -> dict[str, Any]:
    """A failing command in a database status answer: its id, state and last failure."""
    return {"command_id": status.id, "status": status.state, "last_failure": _failure_json(status)}


def _failing_from_json(item: object) -> CommandStatus:
    if not isinstance(item, Mapping):
        raise AnswerFormatError("a failing command must be an object")
    state = item.get("status")
    if state not in ("pending", "in_dlq"):
        raise AnswerFormatError("a failing command's 'status' must be pending or in_dlq")
    detail = item.get("last_failure")
    if not isinstance(detail, Mapping):
        raise AnswerFormatError("a failing command's 'last_failure' must be an object")
    return _status(_text(item.get("command_id"), "command_id"), state, detail)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """A typed error: ``error_type`` is the contract, ``message`` is for people."""

    error_type: str
    message: str
    retryable: bool = False
    #: Extra fields of the error object (for example ``position``).
    extra: dict[str, Any] = field(default_factory=dict)

    KEYS: ClassVar[frozenset[str]] = frozenset({"type", "message", "retryable"})

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "type": self.error_type,
            "message": self.message,
            "retryable": self.retryable,
        }
        error.update({k: v for k, v in self.extra.items() if k not in self.KEYS})
        return {"error": error}

    @classmethod
    def from_json(cls, answer: Mapping[str, Any]) -> ErrorAnswer:
        error = answer.get("error")
        if not isinstance(error, Mapping):
            raise AnswerFormatError("an error answer's 'error' must be an object")
        return cls(
            error_type=_text(error.get("type"), "type"),
            message=_text(error.get("message"), "message"),
            retryable=_bool(error.get("retryable"), "retryable"),
            extra={k: v for k, v in error.items() if k not in cls.KEYS},
        )


Answer = QueryResult | StatusAnswer | DatabaseStatusAnswer | ErrorAnswer


def decode(answer: object) -> Answer:
    """The typed answer for a reader's JSON answer; :class:`AnswerFormatError` if none fits."""
    if not isinstance(answer, Mapping):
        raise AnswerFormatError(f"a reader answer must be an object, not {type(answer).__name__}")
    if "error" in answer:
        return ErrorAnswer.from_json(answer)
    if "command_id" in answer:
        return StatusAnswer.from_json(answer)
    if "blocked_by" in answer:
        return DatabaseStatusAnswer.from_json(answer)
    if "columns" in answer:
        return QueryResult.from_json(answer)
    raise AnswerFormatError("not a query, status, database status or error answer")


def _position(value: object, name: str) -> Position:
    try:
        return Position.parse(value)
    except InvalidPositionError as exc:
        raise AnswerFormatError(f"{name!r}: {exc}") from None


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerFormatError(f"{name!r} must be an integer")
    return value


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise AnswerFormatError(f"{name!r} must be true or false")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise AnswerFormatError(f"{name!r} must be a string")
    return value


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)
