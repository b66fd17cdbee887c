"""Every error efsqlite raises on purpose derives from :class:`EfsqliteError`.

Callers catch the base to tell our typed, explained failures from bugs. The errors here are
the ones every part can raise; each part keeps its own in its ``exceptions`` module
(``efsqlite.write.exceptions``, ``efsqlite.read.exceptions``, ``efsqlite.client.exceptions``,
``efsqlite.devstack.exceptions``), all derived from this base.
"""

from __future__ import annotations

from enum import StrEnum


class EfsqliteError(Exception):
    """Base of every error efsqlite raises on purpose."""


class InvalidSettingError(EfsqliteError):
    """An environment variable holds a value the settings model refuses.

    The message names the variable, so a bad deployment is fixed from one log line.
    """


class InvalidDatabaseNameError(EfsqliteError, ValueError):
    """A database name does not match ``[a-z0-9_-]{1,64}``."""


class DatabaseOpenError(EfsqliteError):
    """A database opened, but not the way the design needs (the journal mode did not stick)."""


class RegistryError(EfsqliteError):
    """A command or query registry cannot be loaded or is misused."""


class ErrorType(StrEnum):
    """The one vocabulary of error types, writer, reader and client alike (``docs/errors.md``).

    A type is the contract (programs branch on it); its message is for people. Writer
    rejections and failures are stored in the ledger and reported by the reader's status
    answers; reader errors are the ``type`` of ``{"error": {...}}`` answers. Two families are
    open by design: a named command's handler may reject with its own type
    (``CommandRejectedError(error_type=...)``), and a transient SQLite failure is reported by
    SQLite's extended result name (``SQLITE_BUSY``, ``SQLITE_IOERR_WRITE``, ...).
    """

    # -- rejections: final, recorded as the command's outcome ------------------------------
    NOT_ALLOWED = "NotAllowed"
    SQL_ERROR = "SQLError"
    CONSTRAINT_VIOLATION = "ConstraintViolation"
    INVALID_STATEMENT = "InvalidStatement"
    INVALID_PARAMS = "InvalidParams"
    INVALID_ARGS = "InvalidArgs"
    UNKNOWN_COMMAND = "UnknownCommand"
    INVALID_MESSAGE = "InvalidMessage"
    UNPARSEABLE_BODY = "UnparseableBody"
    WRONG_DATABASE = "WrongDatabase"
    WRONG_MESSAGE_GROUP = "WrongMessageGroup"
    RESOURCE_LIMIT = "ResourceLimit"
    COMMAND_REJECTED = "CommandRejected"
    # -- failures: retried by SQS, then the DLQ; the last one is kept for status --------------
    SCHEMA_NOT_READY = "SchemaNotReady"
    DEADLINE_REACHED = "DeadlineReached"
    TRANSACTION_LOST = "TransactionLost"
    HANDLER_ERROR = "HandlerError"
    WRITER_ERROR = "WriterError"
    UNKNOWN_DATABASE = "UnknownDatabase"
    MIGRATION_FAILED = "MigrationFailed"
    # -- reader errors ------------------------------------------------------------------------
    INVALID_REQUEST = "InvalidRequest"
    QUERY_TIMEOUT = "QueryTimeout"
    TOO_LARGE = "TooLarge"
    DATABASE_NOT_FOUND = "DatabaseNotFound"
    NOT_YET_AT_POSITION = "NotYetAtPosition"
    RECOVERING = "Recovering"
    UNAVAILABLE = "Unavailable"
    ROUTE_NOT_FOUND = "RouteNotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    INTERNAL = "Internal"
