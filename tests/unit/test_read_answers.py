"""The reader's typed answers: what the reader serializes, the client decodes to the same."""

from __future__ import annotations

from typing import Any

import pytest
from efsqlite.core.ledger import CommandStatus, LedgerSummary
from efsqlite.core.position import Position
from efsqlite.read.answers import (
    AnswerFormatError,
    DatabaseStatusAnswer,
    ErrorAnswer,
    QueryResult,
    StatusAnswer,
    decode,
)
from efsqlite.read.exceptions import NotYetAtPositionError

from tests.support.statuses import FAILING, PARKED

BIG = Position(18849496460467696128)


@pytest.mark.parametrize(
    "answer",
    [
        QueryResult(["a", "b"], [[1, None], ["x", 2.5]], BIG, 3, truncated=True, stale=True),
        QueryResult([], [], Position.ZERO, 0),
        StatusAnswer("main", CommandStatus("c1", "applied", position=BIG), BIG),
        StatusAnswer(
            "main",
            CommandStatus("c2", "rejected", error_type="NotAllowed", error_message="no"),
            BIG,
        ),
        StatusAnswer(
            "main",
            CommandStatus(
                "c3", "pending", error_type="SchemaNotReady", error_message="m", attempts=3
            ),
            Position(7),
            stale=True,
        ),
        StatusAnswer("main", CommandStatus("c4", "unknown"), Position.ZERO),
        StatusAnswer("main", FAILING, Position(9)),
        StatusAnswer("main", PARKED, Position(9)),
        StatusAnswer("main", CommandStatus("c7", "unknown"), Position(9), blocked_by=FAILING),
        DatabaseStatusAnswer(
            "main",
            LedgerSummary(BIG, 2, {"applied": 5, "rejected": 1}, 1, 1, [FAILING, PARKED], FAILING),
        ),
        DatabaseStatusAnswer("empty", LedgerSummary(Position.ZERO, 0, {}, 0, 0, [], None)),
        ErrorAnswer("NotYetAtPosition", "later", True, {"position": "5"}),
    ],
)
def test_every_answer_round_trips(answer: Any) -> None:
    # GIVEN an answer  WHEN serialized as the reader does and decoded as the client does
    # THEN it is the same answer
    assert decode(answer.to_json()) == answer


def test_a_read_error_serializes_through_the_same_type() -> None:
    # GIVEN a reader error with an extra field  WHEN answered  THEN the typed error decodes
    body = NotYetAtPositionError("not yet", position="5").body()
    assert decode(body) == ErrorAnswer("NotYetAtPosition", "not yet", True, {"position": "5"})


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {},
        {"command": {"id": "c1", "outcome": "applied"}},
        {"columns": ["a"], "rows": [[1]], "position": "5"},
        {"columns": ["a"], "rows": [[1]], "position": "+5", "schema_version": 1},
        {"columns": "a", "rows": [], "position": "5", "schema_version": 1},
        {"command_id": "c1", "status": "done", "db": "main", "current_position": "1"},
        {"command_id": "c1", "status": "applied", "db": "main", "current_position": 1.5},
        {
            "db": "main",
            "position": "1",
            "schema_version": 1,
            "outcomes": {},
            "pending": 0,
            "in_dlq": 0,
            "failures": [],
            "blocked_by": {"command_id": "c", "status": "applied", "last_failure": {}},
        },
        {
            "db": "main",
            "position": "1",
            "schema_version": 1,
            "outcomes": [],
            "pending": 0,
            "in_dlq": 0,
            "failures": [],
            "blocked_by": None,
        },
        {
            "command_id": "c1",
            "status": "pending",
            "db": "main",
            "current_position": "1",
            "last_failure": {"type": "X", "receive_count": "2"},
        },
        {"error": "boom"},
        {"error": {"type": "X", "message": "m", "retryable": "yes"}},
    ],
)
def test_other_shapes_are_refused_not_guessed(answer: Any) -> None:
    # GIVEN an answer spelled otherwise than documented  THEN decode refuses it, typed
    with pytest.raises(AnswerFormatError):
        decode(answer)
