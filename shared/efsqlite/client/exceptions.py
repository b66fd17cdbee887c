"""Errors the client library raises, on the shared base."""

from __future__ import annotations

from efsqlite.core.exceptions import EfsqliteError


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


class QueueError(EfsqliteError):
    """An SQS queue could not be reached or read (counts, attributes, its ARN)."""


class RedriveError(EfsqliteError):
    """A redrive could not run, or SQS failed it part way (see the message for how far)."""


class ImportInputError(EfsqliteError, ValueError):
    """An import's input cannot become commands: no such file, a bad row, an odd identifier."""
