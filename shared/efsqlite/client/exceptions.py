"""Errors the client library raises, on the shared base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from efsqlite.core.exceptions import EfsqliteError

if TYPE_CHECKING:
    from efsqlite.core.ledger import CommandStatus
    from efsqlite.write.wire import Problem


class ClientConfigError(EfsqliteError):
    """The client cannot tell where the queue or the reader is (no endpoints file, no URL)."""


class InvalidCommandError(EfsqliteError, ValueError):
    """A command is refused before sending: it is not a valid wire format v1 command.

    ``problems`` says which fields break which rule (empty when the command is not JSON).
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(problems)


class SendError(EfsqliteError):
    """SQS refused some messages for good, or kept failing them after retries."""


class ReadRequestError(EfsqliteError):
    """The reader answered with a typed error (``type``, ``message``, ``retryable``, and the
    error object's other fields in ``extra``, such as the ``position`` a reader had reached)."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        retryable: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.extra = dict(extra or {})


class ReaderInvokeError(EfsqliteError):
    """The reader Lambda could not be invoked or failed without a typed answer."""


class WaitTimeoutError(EfsqliteError, TimeoutError):
    """A command did not settle within the time the caller gave it.

    ``status`` is its last status (``unknown``, ``pending`` or ``in_dlq``); ``reason`` says
    why its database is not moving when the ledger knows (a blocked group, no such database),
    else ``None``.
    """

    def __init__(
        self, message: str, *, status: CommandStatus | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message if reason is None else f"{message}: {reason}")
        self.status = status
        self.reason = reason


class DeadLetteredError(WaitTimeoutError):
    """The command's message reached the DLQ: waiting longer cannot settle it (redrive can)."""


class QueueError(EfsqliteError):
    """An SQS queue could not be reached or read (counts, attributes, its ARN)."""


class RedriveError(EfsqliteError):
    """A redrive could not run, or SQS failed it part way (see the message for how far)."""


class ImportInputError(EfsqliteError, ValueError):
    """An import's input cannot become commands: no such file, a bad row, an odd identifier."""
