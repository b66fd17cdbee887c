"""A database's position: the SQS sequence number of the last command its writer settled.

One type, one parse, one encoding, one comparison. A position is born from an SQS
``SequenceNumber`` (the writer), a caller's ``min_position`` (the reader) or the ledger's
stored text, and leaves as the public decimal text (answers, bookmarks) or the stored form.

DO parse every position that crosses a boundary with :meth:`Position.parse`: 1 to 40 ASCII
digits, or a non-negative int below ``10**40``.
DO compare :class:`Position` objects (numeric order): SQS sequence numbers reach 128 bits.
DON'T parse with ``int()`` or check with ``str.isdigit()`` alone: both take "+5", " 5", "5_0"
or Arabic-Indic digits.
DON'T ``CAST`` a stored position to INTEGER in SQL: it overflows SQLite's 64-bit integers;
the stored form is fixed-width text, so text order is numeric order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from efsqlite.core.exceptions import EfsqliteError

#: 128-bit sequence numbers have at most 39 decimal digits; a fixed width makes text order
#: equal numeric order in the stored form.
POSITION_WIDTH = 40


class InvalidPositionError(EfsqliteError, ValueError):
    """A position or SQS ``SequenceNumber`` is not 1 to 40 ASCII digits (nor such an int)."""


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """A settled position (``Position.ZERO`` before the first command)."""

    value: int
    ZERO: ClassVar[Position]

    @classmethod
    def parse(cls, value: object) -> Position:
        """The position ``value`` names: decimal text as SQS writes it, or an int.

        Raises :class:`InvalidPositionError` for anything else (bools, signs, spaces,
        underscores, non-ASCII digits, more than 40 digits, negative or too large ints).
        """
        if isinstance(value, str):
            if 0 < len(value) <= POSITION_WIDTH and value.isascii() and value.isdigit():
                return cls(int(value))
            raise InvalidPositionError(
                f"invalid position {value[:60]!a}: it must be 1 to {POSITION_WIDTH} ASCII digits"
            )
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < 10**POSITION_WIDTH:
                return cls(value)
            raise InvalidPositionError("invalid position: out of range")
        raise InvalidPositionError(f"invalid position: a {type(value).__name__}, not digits")

    def stored(self) -> str:
        """The fixed-width text the ledger stores (text order == numeric order)."""
        return str(self.value).zfill(POSITION_WIDTH)

    def __str__(self) -> str:
        """The public form: the decimal sequence number, no padding."""
        return str(self.value)


Position.ZERO = Position(0)
