"""Typed errors of the read path, each with its wire type, HTTP status and retry advice.

Callers of the reader get ``{"error": {"type", "message", "retryable"}}``; the type is the
contract, the message is for humans. Kept in its own lean module so that the query core, the
snapshot manager and the request layer share them without importing one another.

DO raise one of these for every failure a caller should see; anything else is a bug and the
handler answers ``internal``.
DON'T put caller-controlled text in ``error_type``: it is part of the public contract.
Messages may quote caller text, so :meth:`ReadError.body` cuts them to
:data:`MAX_MESSAGE_CHARS` (a 5 MB ``db`` would otherwise be echoed past Lambda's 6 MB answer
limit) and escapes lone surrogates (strict JSON parsers refuse them).
"""

from __future__ import annotations

from typing import Any

from efsqlite.core.exceptions import EfsqliteError, ErrorType
from efsqlite.read.answers import ErrorAnswer

#: Longest message an error body carries; longer ones are cut and marked with "...".
MAX_MESSAGE_CHARS = 1000


def safe_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with lone surrogates written as ``\\udcxx``, cut to ``limit`` characters."""
    if len(text) > 4 * limit:
        text = text[: 4 * limit]  # enough to fill the cut text, escapes included
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ReadError(EfsqliteError):
    """Base of the reader's answered errors: ``error_type`` is the public contract."""

    error_type: str = ErrorType.INTERNAL
    retryable = False
    http_status = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        #: Extra fields merged into the error body (for example the current position).
        self.extra = extra

    def answer(self) -> ErrorAnswer:
        """The typed answer for this error (the message made safe to send)."""
        return ErrorAnswer(self.error_type, safe_text(str(self)), self.retryable, self.extra)

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` JSON answer for this error."""
        return self.answer().to_json()


class InvalidRequestError(ReadError):
    """The payload is malformed: wrong type, missing field, bad parameter count."""

    error_type: str = ErrorType.INVALID_REQUEST
    http_status = 400


class NotAllowedError(ReadError):
    """The SQL would write, attach, load code or run several statements: refused for good."""

    error_type: str = ErrorType.NOT_ALLOWED
    http_status = 403


class SqlError(ReadError):
    """SQLite refused the query (syntax, unknown table or column)."""

    error_type: str = ErrorType.SQL_ERROR
    http_status = 400


class QueryTimeoutError(ReadError):
    """The query ran past its deadline; retrying the same query will time out again."""

    error_type: str = ErrorType.QUERY_TIMEOUT
    http_status = 408


class TooLargeError(ReadError):
    """A value or the answer exceeds the byte cap (Lambda answers at most 6 MB), or the query
    needs more memory than SQLite's hard heap limit (``EFSQLITE_MAX_HEAP_MB``) allows."""

    error_type: str = ErrorType.TOO_LARGE
    http_status = 413


class DatabaseNotFoundError(ReadError):
    """No database file of that name exists (the reader never creates one)."""

    error_type: str = ErrorType.DATABASE_NOT_FOUND
    http_status = 404


class NotYetAtPositionError(ReadError):
    """The writer has not settled ``min_position`` within the request's timeout."""

    error_type: str = ErrorType.NOT_YET_AT_POSITION
    retryable = True
    http_status = 503


class RecoveringError(ReadError):
    """A hot journal (writer crash mid-commit) blocks read-only opens until the writer runs."""

    error_type: str = ErrorType.RECOVERING
    retryable = True
    http_status = 503


class BusyError(ReadError):
    """The database stayed locked past the busy timeout, or an I/O error: try again."""

    error_type: str = ErrorType.UNAVAILABLE
    retryable = True
    http_status = 503


class RouteNotFoundError(ReadError):
    """The Function URL path is not one the reader serves."""

    error_type: str = ErrorType.ROUTE_NOT_FOUND
    http_status = 404


class MethodNotAllowedError(ReadError):
    """The Function URL path exists but not with this HTTP method."""

    error_type: str = ErrorType.METHOD_NOT_ALLOWED
    http_status = 405


class InternalError(ReadError):
    """A bug: the handler caught something it did not expect."""
