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


class DatabaseOpenError(EfsqliteError):
    """A database opened, but not the way the design needs (the journal mode did not stick)."""


class MigrationError(EfsqliteError):
    """A migration file is malformed, was edited after it was applied, or failed to apply."""


class RegistryError(EfsqliteError):
    """A command or query registry cannot be loaded or is misused."""


class MessageTooLargeError(EfsqliteError):
    """A command or packed message does not fit in one SQS message."""


class LocalStackError(EfsqliteError):
    """The local stack cannot start or run (port busy, data folder locked, handler missing)."""


class ClientConfigError(EfsqliteError):
    """The client cannot tell where the queue or the reader is (no endpoints file, no URL)."""


class InvalidCommandError(EfsqliteError, ValueError):
    """A command is refused before sending: it is not a valid wire format v1 command."""


class SendError(EfsqliteError):
    """SQS refused some messages for good, or kept failing them after retries."""


class ReadRequestError(EfsqliteError):
    """The reader answered with a typed error (``type``, ``message``, ``retryable``)."""

    def __init__(self, error_type: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.retryable = retryable


class ReaderInvokeError(EfsqliteError):
    """The reader Lambda could not be invoked or failed without a typed answer."""


class WaitTimeoutError(EfsqliteError, TimeoutError):
    """A command did not settle within the time the caller gave it."""
