"""Shared type aliases, kept import-light so the reader can use them."""

from __future__ import annotations

from typing import Literal, TypeAlias

#: A value SQLite can bind from JSON: the JSON scalars.
SqlValue: TypeAlias = str | int | float | bool | None
#: Positional (``?``) or named (``:name``) parameters.
SqlParams: TypeAlias = list[SqlValue] | dict[str, SqlValue]

#: The two outcomes a command can settle with. ``failed`` is never stored as an outcome:
#: a failed command is retried by SQS and settles later.
Outcome: TypeAlias = Literal["applied", "rejected"]
#: A command's status as the ledger reports it (``efsqlite.core.ledger.COMMAND_STATES``).
CommandState: TypeAlias = Literal["applied", "rejected", "pending", "in_dlq", "unknown"]

JournalMode: TypeAlias = Literal["DELETE", "TRUNCATE", "PERSIST"]
ReadMode: TypeAlias = Literal["snapshot", "direct"]

#: The range of an SQLite INTEGER; a larger Python int cannot be bound, so it is refused.
SQLITE_INT_MIN, SQLITE_INT_MAX = -(2**63), 2**63 - 1
