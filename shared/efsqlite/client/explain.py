"""Why a command has not settled, in one line a person can act on.

The ledger's facts (:class:`~efsqlite.core.ledger.CommandStatus`) become text here, once, for
``efsqlite status``, ``send --wait`` on timeout and the client's :class:`WaitTimeoutError`.

DO say what to do next when the facts say it (a typo'd database, a migration the code lacks,
a command parked in the DLQ): the CLI is where a new user learns what happened.
DON'T guess: with nothing in the ledger, say nothing (``None``) rather than a likely story.
"""

from __future__ import annotations

import time

from efsqlite.core.exceptions import ErrorType
from efsqlite.core.ledger import CommandStatus

#: What to do about a failure, by type, when the type says it.
_NEXT_STEP: dict[str, str] = {
    ErrorType.MIGRATION_FAILED: "fix the migrations the writer ships (or deploy the code that "
    "has them); the group moves once the writer can open the database",
    ErrorType.SCHEMA_NOT_READY: "deploy the migration it expects, or resend without expect_schema",
}


def when(epoch_ms: int | None) -> str:
    """An epoch-milliseconds time as UTC ``YYYY-MM-DD HH:MM:SS`` (``?`` when unknown)."""
    if epoch_ms is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_ms / 1000))


def receives(status: CommandStatus) -> str:
    """``receive 3 of 5, 2 left before the DLQ`` (or what of it is known)."""
    if status.receive_count is None:
        return f"{status.attempts or '?'} failed attempts"
    if status.receives_left is None:
        return f"receive {status.receive_count} (the writer does not know maxReceiveCount)"
    if status.receives_left == 0:
        return f"receive {status.receive_count} of {status.receive_count}: moved to the DLQ"
    total = status.receive_count + status.receives_left
    return f"receive {status.receive_count} of {total}, {status.receives_left} left before the DLQ"


def describe_failure(status: CommandStatus) -> str:
    """A failing command's last error, since when, and its receives: one line."""
    line = (
        f"{status.error_type}: {status.error_message}; failing since "
        f"{when(status.failing_since_ms)}, {receives(status)}"
    )
    if status.state == "in_dlq":
        return line + "; fix the cause, then `efsqlite redrive` applies it once"
    step = _NEXT_STEP.get(str(status.error_type))
    return line + (f"; {step}" if step else "")


def blocked_line(db: str, blocker: CommandStatus) -> str:
    """Why database ``db`` is not moving: the command at the head of its group."""
    return (
        f"database {db!r} is blocked: command {blocker.id!r} at the head of its FIFO group "
        f"keeps failing and every later command waits behind it ({describe_failure(blocker)})"
    )


def unknown_database_line(db: str) -> str:
    """What a missing database means for a command sent to it."""
    return (
        f"database {db!r} does not exist: the writer creates only the databases the deployment "
        "declares (EFSQLITE_DATABASES); if the name is a typo, the message fails as "
        "UnknownDatabase and ends in the DLQ; if not, declare it and redrive"
    )
