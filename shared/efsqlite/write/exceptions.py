"""Errors of the write path (commands, migrations, the wire format), on the shared base."""

from __future__ import annotations

from efsqlite.core.exceptions import EfsqliteError, ErrorType


class CommandRejectedError(EfsqliteError):
    """Raised by a named command's handler to reject the command for good.

    The writer records the rejection (type and message) and acknowledges the message, so the
    FIFO group keeps moving. Raise it for business-rule failures that a retry cannot fix.
    """

    error_type: str = ErrorType.COMMAND_REJECTED

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type


class MigrationError(EfsqliteError):
    """A migration file is malformed, was edited after it was applied, or failed to apply."""

    error_type: str = ErrorType.MIGRATION_FAILED


class MessageTooLargeError(EfsqliteError):
    """A command or packed message does not fit in one SQS message."""


class UnknownDatabaseError(EfsqliteError):
    """A command names a database that does not exist and the deployment does not declare.

    The writer creates no file for it: its messages fail (``UnknownDatabase``) and reach the
    DLQ, so a typo never becomes a database and a redrive applies them once it is declared.
    """

    error_type: str = ErrorType.UNKNOWN_DATABASE
