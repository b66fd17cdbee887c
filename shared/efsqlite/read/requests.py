"""Reader requests: one check of an untrusted payload into a typed request.

Every field a caller sends is checked here, before SQLite sees it; what fails is an
:class:`~efsqlite.read.exceptions.InvalidRequestError` (or ``NotAllowed`` when raw SQL is off).

DO check caller text before SQLite sees it: a lone surrogate makes binding raise
``UnicodeEncodeError``, which no SQLite error handler catches.
DO refuse unknown fields: a misspelt ``min_positon`` would otherwise read without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from efsqlite.core.exceptions import InvalidDatabaseNameError
from efsqlite.core.names import MAX_COMMAND_ID_CHARS, check_db_name, is_command_id
from efsqlite.core.position import InvalidPositionError, Position
from efsqlite.core.sqlpolicy import MAX_SQL_CHARS, is_text
from efsqlite.core.types import SQLITE_INT_MAX, SQLITE_INT_MIN, SqlParams, SqlValue
from efsqlite.read.exceptions import InvalidRequestError, NotAllowedError
from efsqlite.read.queries import QueryRegistry
from efsqlite.read.settings import ReaderSettings

_REQUEST_KEYS = {"db", "sql", "query", "params", "max_rows", "min_position", "timeout_ms"}
_STATUS_KEYS = {"db", "command_id"}
_DATABASE_STATUS_KEYS = {"db", "database_status"}


@dataclass(frozen=True, slots=True)
class QueryRequest:
    db: str
    sql: str
    params: SqlParams
    max_rows: int
    timeout_ms: int
    min_position: Position | None


@dataclass(frozen=True, slots=True)
class StatusRequest:
    db: str
    command_id: str


@dataclass(frozen=True, slots=True)
class DatabaseStatusRequest:
    """``{"db": ..., "database_status": true}``: the ledger's summary, read fresh."""

    db: str


def _check_unicode(where: str, text: str) -> str:
    """``text`` if it can be sent to SQLite: no lone surrogate (as JSON's ``\\udc80`` gives)."""
    if not is_text(text):
        raise InvalidRequestError(f"{where} is not valid Unicode: it holds a lone surrogate")
    return text


def _check_db(value: object) -> str:
    if value is None:
        raise InvalidRequestError("'db' is required")
    try:
        return check_db_name(value)
    except InvalidDatabaseNameError as exc:
        raise InvalidRequestError(str(exc)) from None


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(f"{name!r} must be an integer from {low} to {high}")
    return value


def parse_position(value: object) -> Position:
    """A ``min_position`` from a request: decimal text (as SQS writes it) or an int."""
    try:
        return Position.parse(value)
    except InvalidPositionError:
        raise InvalidRequestError(
            "'min_position' must be a decimal sequence number, like '18849…'"
        ) from None


def _check_scalar(where: str, value: object) -> SqlValue:
    if isinstance(value, str):
        return _check_unicode(where, value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not SQLITE_INT_MIN <= value <= SQLITE_INT_MAX:
            raise InvalidRequestError(f"{where} is beyond SQLite's 64-bit integers")
        return value
    if value is None or isinstance(value, float | bool):
        return value
    raise InvalidRequestError(f"{where} must be a JSON scalar (string, number, boolean, null)")


def _check_params(value: object) -> SqlParams:
    if value is None:
        return []
    if isinstance(value, list):
        return [_check_scalar(f"params[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        checked: dict[str, SqlValue] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise InvalidRequestError("named params need non-empty string keys")
            _check_unicode("a params key", key)
            checked[key] = _check_scalar(f"params[{key[:100]!r}]", item)
        return checked
    raise InvalidRequestError("'params' must be a list (for ?) or an object (for :name)")


def parse_request(
    payload: object, settings: ReaderSettings, queries: QueryRegistry
) -> QueryRequest | StatusRequest | DatabaseStatusRequest:
    """Check a direct-invoke payload; raises :class:`InvalidRequestError` or NotAllowed."""
    if not isinstance(payload, dict):
        raise InvalidRequestError("the payload must be a JSON object")
    if "database_status" in payload:
        unknown = set(payload) - _DATABASE_STATUS_KEYS
        if unknown:
            raise InvalidRequestError(
                f"a database status request takes only db and database_status, "
                f"not {sorted(map(str, unknown))}"
            )
        if payload["database_status"] is not True:
            raise InvalidRequestError("'database_status' must be true")
        return DatabaseStatusRequest(_check_db(payload.get("db")))
    if "command_id" in payload:
        unknown = set(payload) - _STATUS_KEYS
        if unknown:
            raise InvalidRequestError(
                f"a command status request takes only db and command_id, "
                f"not {sorted(map(str, unknown))}"
            )
        command_id = payload["command_id"]
        if not is_command_id(command_id):
            raise InvalidRequestError(
                f"'command_id' must be a string of 1 to {MAX_COMMAND_ID_CHARS} characters"
            )
        _check_unicode("'command_id'", command_id)
        return StatusRequest(_check_db(payload.get("db")), command_id)
    unknown = set(payload) - _REQUEST_KEYS
    if unknown:
        raise InvalidRequestError(f"unknown fields {sorted(map(str, unknown))}")
    db = _check_db(payload.get("db"))
    sql_value, name = payload.get("sql"), payload.get("query")
    if (sql_value is None) == (name is None):
        raise InvalidRequestError("give exactly one of 'sql' and 'query' (a named query)")
    if name is not None:
        if not isinstance(name, str):
            raise InvalidRequestError("'query' must be the name of a registered query")
        named = queries.get(name)
        if named is None:
            raise InvalidRequestError(f"no named query {name[:100]!r} is registered")
        sql = named.sql
    else:
        if not settings.allow_raw_sql:
            raise NotAllowedError("raw SQL is turned off here; use a named 'query'")
        if not isinstance(sql_value, str):
            raise InvalidRequestError("'sql' must be a string")
        if len(sql_value) > MAX_SQL_CHARS:
            raise InvalidRequestError(
                f"'sql' is {len(sql_value)} characters; the limit is {MAX_SQL_CHARS}"
            )
        if not sql_value.strip():
            raise InvalidRequestError("'sql' is empty")
        if "\x00" in sql_value:
            raise InvalidRequestError("'sql' contains a NUL character")
        sql = _check_unicode("'sql'", sql_value)
    max_rows = payload.get("max_rows")
    timeout_ms = payload.get("timeout_ms")
    min_position = payload.get("min_position")
    return QueryRequest(
        db=db,
        sql=sql,
        params=_check_params(payload.get("params")),
        max_rows=settings.max_rows
        if max_rows is None
        else _check_int("max_rows", max_rows, 1, settings.max_rows),
        timeout_ms=settings.default_timeout_ms
        if timeout_ms is None
        else _check_int("timeout_ms", timeout_ms, 1, settings.max_timeout_ms),
        min_position=None if min_position is None else parse_position(min_position),
    )
