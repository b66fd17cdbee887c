"""Position: one parse (ASCII digits only), one encoding, one comparison."""

from __future__ import annotations

import pytest
from efsqlite.core.position import POSITION_WIDTH, InvalidPositionError, Position
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    "value",
    ["\u0661\u0662\u0663", "+5", " 5", "5 ", "5_0", "", "1" * 41, "\u00b2", "-1", "0x10", "1e3"],
)
def test_parse_refuses_text_that_int_would_take(value: str) -> None:
    # GIVEN text int() or str.isdigit() would take  WHEN parsed  THEN refused, typed
    with pytest.raises(InvalidPositionError):
        Position.parse(value)
    assert issubclass(InvalidPositionError, ValueError)


@pytest.mark.parametrize("value", [True, False, -1, 10**POSITION_WIDTH, 1.0, None, b"5", [5]])
def test_parse_refuses_values_that_are_not_positions(value: object) -> None:
    with pytest.raises(InvalidPositionError):
        Position.parse(value)


def test_parse_takes_sqs_sequence_numbers_and_ints() -> None:
    # GIVEN an SQS FIFO sequence number (above 2**64) as text and as an int
    text = "18849496460467696128"
    # THEN both name the same position, whose public form is the text itself
    assert Position.parse(text) == Position.parse(int(text))
    assert str(Position.parse(text)) == text
    assert str(Position.parse("007")) == "7" and Position.parse("0") == Position.ZERO


@given(st.integers(0, 10**POSITION_WIDTH - 1), st.integers(0, 10**POSITION_WIDTH - 1))
def test_stored_text_order_is_numeric_order(a: int, b: int) -> None:
    # GIVEN two positions  THEN their stored forms sort as the numbers do, round-trip, and
    # have the fixed width
    pa, pb = Position(a), Position(b)
    assert (pa.stored() < pb.stored()) == (pa < pb) == (a < b)
    assert len(pa.stored()) == POSITION_WIDTH
    assert Position.parse(pa.stored()) == pa and Position.parse(str(pa)) == pa
