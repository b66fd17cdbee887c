"""The reader: request parsing, the two entry shapes, and the snapshot and direct read modes.

One core (:meth:`Reader.invoke`) answers a direct Lambda invoke payload; a thin router
(:meth:`Reader.handle_http`) maps Function URL events (payload format 2.0) onto it. Every
answer is a result or ``{"error": {"type", "message", "retryable"}}``: nothing raises out of
:meth:`Reader.handle`.

This module is on the reader's cold start, so it imports no pydantic, boto3 or powertools:
settings are a stdlib dataclass with their own checks, logging is stdlib JSON lines.

DO compare positions as ``Position`` objects (SQS sequence numbers reach 128 bits).
DO bound every wait by the request's timeout and the Lambda's remaining time: the wait for
``min_position``, the lock waits, the snapshot refresh and the query itself.
DO check caller text before SQLite sees it: a lone surrogate makes binding raise
``UnicodeEncodeError``, which no SQLite error handler catches.
DON'T let a setting put the snapshot folder at, inside or above the data folder: the
snapshot clean-up deletes every file there that it did not make.
DON'T import ``efsqlite.write`` (pydantic: about 250 ms of cold start); the import contracts
in ``pyproject.toml`` (``[tool.importlinter]``) refuse it.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self, cast
from urllib.parse import unquote

from efsqlite.core.connections import (
    DEFAULT_HEAP_MB,
    HEAP_MB_BOUNDS,
    database_path,
    default_heap_mb,
    set_hard_heap_limit,
)
from efsqlite.core.exceptions import InvalidDatabaseNameError, InvalidSettingError
from efsqlite.core.names import check_db_name
from efsqlite.core.position import InvalidPositionError, Position
from efsqlite.core.sqlpolicy import FUNCTION_NAME_PATTERN, function_allow_list, is_text
from efsqlite.core.types import ReadMode, SqlParams, SqlValue
from efsqlite.read.answers import QueryResult, StatusAnswer
from efsqlite.read.connection import (
    MAX_SQL_CHARS,
    SQLITE_FAILURES,
    SQLITE_INT_MAX,
    SQLITE_INT_MIN,
    QueryLimits,
    ReadConnection,
    Rows,
    classify,
)
from efsqlite.read.exceptions import (
    BusyError,
    DatabaseNotFoundError,
    InternalError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotAllowedError,
    NotYetAtPositionError,
    ReadError,
    RecoveringError,
    RouteNotFoundError,
)
from efsqlite.read.queries import QueryRegistry, load_queries
from efsqlite.read.snapshot import DatabaseSnapshot, SnapshotDeadlineError, SnapshotStore

LOGGER_NAME = "efsqlite.read.reader"

ENV_PREFIX = "EFSQLITE_"
#: Lambda's synchronous response limit; the byte cap must stay below it.
LAMBDA_RESPONSE_LIMIT = 6_000_000
#: Time kept back from the Lambda's remaining time to build and return the answer.
ANSWER_MARGIN_MS = 250
MAX_COMMAND_ID_CHARS = 128
#: Databases kept open (and snapshotted) per environment; the least recently used goes first.
MAX_OPEN_DATABASES = 16
_REQUEST_KEYS = {"db", "sql", "query", "params", "max_rows", "min_position", "timeout_ms"}
_STATUS_KEYS = {"db", "command_id"}
_FIRST_POLL_S = 0.005
_MAX_POLL_S = 0.1
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_FUNCTION_NAME_RE = re.compile(f"^{FUNCTION_NAME_PATTERN}$")


# -- settings --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReaderSettings:
    """What the reader Lambda reads, from ``EFSQLITE_`` + the field name in upper case.

    A stdlib dataclass, not pydantic: the reader's cold start is the product's latency.
    Bad values raise :class:`InvalidSettingError` naming the variable, at cold start.
    """

    data_dir: Path = Path("/mnt/efsqlite")
    busy_timeout_ms: int = 5000
    read_mode: ReadMode = "snapshot"
    snapshot_dir: Path = Path("/tmp/efsqlite")
    max_staleness_ms: int = 1000
    queries: str | None = None
    allow_raw_sql: bool = True
    max_rows: int = 1000
    max_response_bytes: int = 5_000_000
    default_timeout_ms: int = 2000
    max_timeout_ms: int = 10_000
    #: Functions callers may use beyond SQLite's built-ins (``EFSQLITE_EXTRA_FUNCTIONS``,
    #: comma-separated), for example ones an app registers.
    extra_functions: tuple[str, ...] = ()
    #: SQLite's process-wide hard heap limit (MB); from the environment, half the Lambda's
    #: memory when ``EFSQLITE_MAX_HEAP_MB`` is unset.
    max_heap_mb: int = DEFAULT_HEAP_MB

    #: Inclusive bounds of the integer settings.
    BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {
        "busy_timeout_ms": (0, 600_000),
        "max_staleness_ms": (0, 3_600_000),
        "max_rows": (1, 1_000_000),
        "max_response_bytes": (1_000, LAMBDA_RESPONSE_LIMIT),
        "default_timeout_ms": (1, 900_000),
        "max_timeout_ms": (1, 900_000),
        "max_heap_mb": HEAP_MB_BOUNDS,
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                self._refuse(name, value, f"must be an integer from {low} to {high}")
        if self.read_mode not in ("snapshot", "direct"):
            self._refuse("read_mode", self.read_mode, "must be 'snapshot' or 'direct'")
        if self.default_timeout_ms > self.max_timeout_ms:
            self._refuse(
                "default_timeout_ms",
                self.default_timeout_ms,
                f"must not exceed EFSQLITE_MAX_TIMEOUT_MS ({self.max_timeout_ms})",
            )
        for name in ("data_dir", "snapshot_dir"):
            if not isinstance(getattr(self, name), Path) or not str(getattr(self, name)):
                self._refuse(name, getattr(self, name), "must be a folder path")
        self._check_folders_apart()
        if self.queries is not None and ":" not in self.queries:
            self._refuse("queries", self.queries, "must be 'package.module:attribute'")
        if not isinstance(self.allow_raw_sql, bool):
            self._refuse("allow_raw_sql", self.allow_raw_sql, "must be true or false")
        if not isinstance(self.extra_functions, tuple) or not all(
            isinstance(name, str) and _FUNCTION_NAME_RE.fullmatch(name)
            for name in self.extra_functions
        ):
            self._refuse(
                "extra_functions",
                ",".join(map(str, self.extra_functions)),
                "must be comma-separated SQL function names",
            )

    def _check_folders_apart(self) -> None:
        """The snapshot clean-up deletes what it did not make: keep it off the data."""
        try:
            data, snap = self.data_dir.resolve(), self.snapshot_dir.resolve()
        except (OSError, RuntimeError) as exc:
            raise InvalidSettingError(
                f"invalid settings {self.env_var('snapshot_dir')}={str(self.snapshot_dir)!r} "
                f"and {self.env_var('data_dir')}={str(self.data_dir)!r}: cannot resolve: {exc}"
            ) from None
        if snap == data or data in snap.parents or snap in data.parents:
            raise InvalidSettingError(
                f"invalid settings {self.env_var('snapshot_dir')}={str(self.snapshot_dir)!r} "
                f"and {self.env_var('data_dir')}={str(self.data_dir)!r}: the snapshot folder "
                f"({snap}) must be neither the data folder ({data}), nor inside it, nor above "
                "it: its clean-up deletes every file there that it did not make"
            )

    @classmethod
    def env_var(cls, field: str) -> str:
        return ENV_PREFIX + field.upper()

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Map each environment variable this class reads to its field name."""
        return {cls.env_var(f.name): f.name for f in fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build the settings from the environment; empty values mean the default."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in cls.env_vars().items():
            raw = source.get(var)
            if raw is None or raw.strip() == "":
                continue
            raw = raw.strip()
            if name in cls.BOUNDS:
                try:
                    values[name] = int(raw)
                except ValueError:
                    cls._refuse(name, raw, "must be an integer")
            elif name == "allow_raw_sql":
                if raw.lower() not in _TRUE | _FALSE:
                    cls._refuse(name, raw, "must be true or false")
                values[name] = raw.lower() in _TRUE
            elif name in ("data_dir", "snapshot_dir"):
                values[name] = Path(raw)
            elif name == "extra_functions":
                values[name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            else:
                values[name] = raw
        if "max_heap_mb" not in values:
            values["max_heap_mb"] = default_heap_mb(source)
        return cls(**values)

    @classmethod
    def _refuse(cls, name: str, value: object, why: str) -> None:
        raise InvalidSettingError(f"invalid setting {cls.env_var(name)}={value!r}: {why}")

    def query_limits(self) -> QueryLimits:
        return QueryLimits(
            max_length=self.max_response_bytes,
            functions=function_allow_list(self.extra_functions),
        )


# -- requests --------------------------------------------------------------------------------
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
) -> QueryRequest | StatusRequest:
    """Check a direct-invoke payload; raises :class:`InvalidRequestError` or NotAllowed."""
    if not isinstance(payload, dict):
        raise InvalidRequestError("the payload must be a JSON object")
    if "command_id" in payload:
        unknown = set(payload) - _STATUS_KEYS
        if unknown:
            raise InvalidRequestError(
                f"a command status request takes only db and command_id, "
                f"not {sorted(map(str, unknown))}"
            )
        command_id = payload["command_id"]
        if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_COMMAND_ID_CHARS:
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


# -- the reader ------------------------------------------------------------------------------
class Reader:
    """Answers read requests. One instance per execution environment (module scope)."""

    def __init__(
        self,
        settings: ReaderSettings,
        *,
        queries: QueryRegistry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.queries = queries if queries is not None else load_queries(settings.queries)
        self.limits = settings.query_limits()
        #: SQLite's hard heap limit in force (bytes): a query needing more gets too_large.
        self.heap_limit = set_hard_heap_limit(settings.max_heap_mb * 1024 * 1024)
        self._sleep = sleep
        self._store: SnapshotStore | None = None
        self._snapshots: dict[str, DatabaseSnapshot] = {}
        self._direct: dict[str, ReadConnection] = {}

    # -- entry points -----------------------------------------------------------------------
    def handle(self, event: object, context: object = None) -> dict[str, Any]:
        """The Lambda entry: a Function URL event or a direct-invoke payload. Never raises."""
        is_url = _is_function_url(event)
        try:
            if is_url:
                return self.handle_http(cast(dict[str, Any], event), context)
            return self.invoke(event, context)
        except Exception as exc:  # a bug: answer, log, and keep the environment alive
            _log("error", {"message": "reader bug", "error": repr(exc)[:500]}, exc_info=True)
            body = InternalError("internal error; see the reader's logs").body()
            return _http_response(body) if is_url else body

    def invoke(
        self, payload: object, context: object = None, *, escaped: bool = False
    ) -> dict[str, Any]:
        """Answer one direct-invoke payload with a result or a typed error body."""
        started = time.monotonic()
        try:
            request = parse_request(payload, self.settings, self.queries)
            if isinstance(request, StatusRequest):
                return self.status(request)
            deadline = started + request.timeout_ms / 1000
            deadline = min(deadline, _lambda_deadline(context, started))
            return self.query(request, deadline, escaped=escaped)
        except OSError as exc:
            # The snapshot folder: not writable, full, or gone. Another environment may do.
            error: ReadError = BusyError(f"the reader's local storage failed: {exc}")
            _log("warning", {"message": "read failed", "type": error.error_type, "error": str(exc)})
            return error.body()
        except ReadError as exc:
            if exc.retryable or isinstance(exc, InternalError):
                _log(
                    "warning", {"message": "read failed", "type": exc.error_type, "error": str(exc)}
                )
            return exc.body()

    def handle_http(self, event: dict[str, Any], context: object = None) -> dict[str, Any]:
        """Function URL (payload format 2.0): ``POST /query``, ``GET /commands/{id}?db=``."""
        try:
            http = event["requestContext"]["http"]
            method = str(http.get("method", "")).upper()
            path = str(event.get("rawPath") or http.get("path") or "/")
        except (KeyError, TypeError, AttributeError):
            return _http_response(
                InvalidRequestError("not a Function URL payload format 2.0 event").body()
            )
        try:
            if path.rstrip("/") == "/query":
                if method != "POST":
                    raise MethodNotAllowedError("use POST /query with a JSON body")
                answer = self.invoke(_json_body(event), context, escaped=True)
            elif path.startswith("/commands/") and len(path) > len("/commands/"):
                if method != "GET":
                    raise MethodNotAllowedError("use GET /commands/{id}?db=<db>")
                query = event.get("queryStringParameters") or {}
                db = query.get("db") if isinstance(query, dict) else None
                payload = {"db": db, "command_id": unquote(path[len("/commands/") :])}
                answer = self.invoke(payload, context)
            else:
                raise RouteNotFoundError("the reader serves POST /query and GET /commands/{id}")
        except ReadError as exc:
            answer = exc.body()
        return _http_response(answer)

    # -- queries ----------------------------------------------------------------------------
    def query(
        self, request: QueryRequest, deadline: float, *, escaped: bool = False
    ) -> dict[str, Any]:
        """Run a checked query in the configured mode; raises :class:`ReadError`."""
        max_bytes = self.settings.max_response_bytes
        if self.settings.read_mode == "direct":
            return self._query_direct(request, deadline, max_bytes, escaped)
        return self._query_snapshot(request, deadline, max_bytes, escaped)

    def _query_snapshot(
        self, request: QueryRequest, deadline: float, max_bytes: int, escaped: bool
    ) -> dict[str, Any]:
        snap = self._snapshot(request.db)
        poll = _FIRST_POLL_S
        while True:
            stale = snap.ensure_fresh(request.min_position, deadline)
            current = snap.current
            assert current is not None
            if request.min_position is None or current.position >= request.min_position:
                break
            poll = self._wait(
                deadline,
                poll,
                current.position,
                request.min_position,
                source_unreadable=snap.stale_reason if stale else None,
            )
        result = current.reader.query(
            request.sql,
            request.params,
            max_rows=request.max_rows,
            max_bytes=max_bytes,
            deadline=deadline,
            escaped=escaped,
        )
        return _answer(result, current.position, current.schema_version, stale=stale)

    def _query_direct(
        self, request: QueryRequest, deadline: float, max_bytes: int, escaped: bool
    ) -> dict[str, Any]:
        poll = _FIRST_POLL_S
        while True:
            conn = self._direct_conn(request.db)
            try:
                conn.begin(deadline)
                try:
                    position, version = conn.state()
                    if request.min_position is None or position >= request.min_position:
                        result = conn.query(
                            request.sql,
                            request.params,
                            max_rows=request.max_rows,
                            max_bytes=max_bytes,
                            deadline=deadline,
                            escaped=escaped,
                        )
                        return _answer(result, position, version, stale=False)
                finally:
                    conn.end()
            except (*SQLITE_FAILURES, ReadError) as exc:
                error = classify(exc)
                if isinstance(error, BusyError):
                    self._drop_direct(request.db)  # reopen rather than trust the handle
                raise error from None
            poll = self._wait(deadline, poll, position, request.min_position)

    def _wait(
        self,
        deadline: float,
        poll: float,
        position: Position,
        wanted: Position,
        *,
        source_unreadable: ReadError | None = None,
    ) -> float:
        """Sleep before the next look at the position, or give up at the deadline.

        ``source_unreadable`` is why the last look served a stale snapshot, if it did.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if isinstance(source_unreadable, SnapshotDeadlineError):
                raise BusyError(
                    f"a fresh copy of the database did not finish in time; the last good copy "
                    f"is at position {position!s}, not yet {wanted}; "
                    "retry, with a longer timeout_ms",
                    position=str(position),
                )
            if source_unreadable is not None:
                raise RecoveringError(
                    f"the database cannot be read right now (a hot journal or a held lock); "
                    f"the last good copy is at position {position!s}, "
                    f"not yet {wanted}",
                    position=str(position),
                )
            raise NotYetAtPositionError(
                f"the writer has settled position {position!s}, not yet {wanted}; retry later",
                position=str(position),
            )
        self._sleep(min(poll, remaining))
        return min(poll * 2, _MAX_POLL_S)

    # -- command status ---------------------------------------------------------------------
    def status(self, request: StatusRequest) -> dict[str, Any]:
        """The outcome of one command, read from the source database (not the snapshot)."""
        stale = False
        if self.settings.read_mode == "snapshot":
            snap = self._snapshot(request.db)
            try:
                found, position = snap.command_status(request.command_id)
            except (RecoveringError, BusyError):
                if snap.current is None:
                    raise
                found = snap.current.reader.command_status(request.command_id)
                position, stale = snap.current.position, True
        else:
            conn = self._direct_conn(request.db)
            try:
                conn.begin()
                try:
                    position, _ = conn.state()
                    found = conn.command_status(request.command_id)
                finally:
                    conn.end()
            except SQLITE_FAILURES as exc:
                raise classify(exc) from None
        return StatusAnswer(request.db, found, position, stale=stale).to_json()

    # -- per-database state -----------------------------------------------------------------
    def _source_path(self, db: str) -> Path:
        path = database_path(self.settings.data_dir, db)
        if not path.is_file():
            raise DatabaseNotFoundError(f"no database named {db!r}")
        return path

    def _snapshot(self, db: str) -> DatabaseSnapshot:
        snap = self._snapshots.pop(db, None)
        if snap is None:
            self._evict()
            path = self._source_path(db)
            if self._store is None:
                self._store = SnapshotStore(self.settings.snapshot_dir)
            snap = DatabaseSnapshot(
                self._store,
                db,
                path,
                busy_timeout_ms=self.settings.busy_timeout_ms,
                limits=self.limits,
                max_staleness_s=self.settings.max_staleness_ms / 1000,
            )
        self._snapshots[db] = snap  # (re)inserted last: dict order is recency
        return snap

    def _direct_conn(self, db: str) -> ReadConnection:
        conn = self._direct.pop(db, None)
        if conn is None:
            self._evict()
            path = self._source_path(db)
            try:
                conn = ReadConnection.open(
                    path, busy_timeout_ms=self.settings.busy_timeout_ms, limits=self.limits
                )
            except SQLITE_FAILURES as exc:
                raise classify(exc) from None
        self._direct[db] = conn  # (re)inserted last: dict order is recency
        return conn

    def _evict(self) -> None:
        """Close the least recently used database when MAX_OPEN_DATABASES are open.

        Bounds file descriptors and, in snapshot mode, the space taken in ``/tmp``.
        """
        while len(self._direct) >= MAX_OPEN_DATABASES:
            self._drop_direct(next(iter(self._direct)))
        while len(self._snapshots) >= MAX_OPEN_DATABASES:
            self._snapshots.pop(next(iter(self._snapshots))).close()

    def _drop_direct(self, db: str) -> None:
        conn = self._direct.pop(db, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close every connection and delete this process's snapshots."""
        for db in list(self._direct):
            self._drop_direct(db)
        for snap in self._snapshots.values():
            snap.close()
        self._snapshots.clear()
        if self._store is not None:
            self._store.close()
            self._store = None


# -- Function URL helpers --------------------------------------------------------------------
def _answer(rows: Rows, position: Position, version: int, *, stale: bool) -> dict[str, Any]:
    """The JSON query answer every entry shape returns."""
    return QueryResult(
        rows.columns, rows.rows, position, version, truncated=rows.truncated, stale=stale
    ).to_json()


def _is_function_url(event: object) -> bool:
    if not isinstance(event, dict):
        return False
    context = event.get("requestContext")
    return isinstance(context, dict) and isinstance(context.get("http"), dict)


def _json_body(event: Mapping[str, Any]) -> object:
    body = event.get("body")
    if body is None:
        raise InvalidRequestError("POST /query needs a JSON body")
    if not isinstance(body, str):
        raise InvalidRequestError("the body must be text")
    try:
        if event.get("isBase64Encoded"):
            text = binascii.a2b_base64(body, strict_mode=True).decode()
        else:
            text = body
        return json.loads(text)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidRequestError("the body is not valid JSON") from None


def _http_response(answer: dict[str, Any]) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    error = answer.get("error")
    status = 200
    if isinstance(error, dict):
        status = _STATUS_BY_TYPE.get(str(error.get("type")), 500)
        if error.get("retryable"):
            headers["retry-after"] = "1"
    return {
        "statusCode": status,
        "headers": headers,
        "body": json.dumps(answer, separators=(",", ":")),
    }


def _error_classes() -> list[type[ReadError]]:
    found: list[type[ReadError]] = []
    pending: list[type[ReadError]] = [ReadError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


_STATUS_BY_TYPE = {cls.error_type: cls.http_status for cls in _error_classes()}
_STATUS_BY_TYPE["Internal"] = 500


def _log(level: str, fields: dict[str, Any], *, exc_info: bool = False) -> None:
    """One JSON log line. ``logging`` is imported on first use: it is off the cold start."""
    import logging

    getattr(logging.getLogger(LOGGER_NAME), level)(json.dumps(fields), exc_info=exc_info)


def _lambda_deadline(context: object, started: float) -> float:
    """The monotonic time by which the answer must be built, from the Lambda context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return math.inf
    try:
        left_ms = float(remaining())
    except Exception:
        return math.inf
    return started + max(left_ms - ANSWER_MARGIN_MS, 1.0) / 1000
