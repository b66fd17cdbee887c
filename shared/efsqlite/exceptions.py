"""Every error efsqlite raises on purpose derives from :class:`EfsqliteError`.

Callers catch the base to tell our typed, explained failures from bugs.
"""

from __future__ import annotations


class EfsqliteError(Exception):
    """Base of every error efsqlite raises on purpose."""


class InvalidSettingError(EfsqliteError):
    """An environment variable holds a value the settings model refuses.

    The message names the variable, so a bad deployment is fixed from one log line.
    """


class InvalidDatabaseNameError(EfsqliteError, ValueError):
    """A database name does not match ``[a-z0-9_-]{1,64}``."""


class CommandRejectedError(EfsqliteError):
    """Raised by a named command's handler to reject the command for good.

    The writer records the rejection (type and message) and acknowledges the message, so the
    FIFO group keeps moving. Raise it for business-rule failures that a retry cannot fix.
    """

    error_type = "CommandRejected"

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type


class MigrationError(EfsqliteError):
    """A migration file is malformed, was edited after it was applied, or failed to apply."""


class RegistryError(EfsqliteError):
    """A command or query registry cannot be loaded or is misused."""


class MessageTooLargeError(EfsqliteError):
    """A command or packed message does not fit in one SQS message."""
