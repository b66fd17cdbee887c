"""The reader's Function URL transport: payload format 2.0 events in, HTTP responses out.

Three routes: ``POST /query`` (the body is a direct-invoke payload),
``GET /commands/{id}?db=<db>`` (one command's status) and ``GET /databases/{db}`` (the
database's ledger summary: counts, failing commands, a blocked group). :func:`route` turns
an event into the payload :meth:`efsqlite.read.reader.Reader.invoke` answers;
:func:`response` turns that answer into an HTTP response whose status comes from the error
type (each :class:`~efsqlite.read.exceptions.ReadError` names its own).

DO answer a retryable error with ``retry-after``: Function URL callers are often plain HTTP
clients that honour it.
DON'T decode the body leniently: base64 is strict and JSON must parse, else InvalidRequest.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from efsqlite.read.exceptions import (
    InvalidRequestError,
    MethodNotAllowedError,
    ReadError,
    RouteNotFoundError,
)

_COMMANDS = "/commands/"
_DATABASES = "/databases/"


def is_function_url(event: object) -> bool:
    """True for a Function URL event (it carries ``requestContext.http``)."""
    if not isinstance(event, dict):
        return False
    context = event.get("requestContext")
    return isinstance(context, dict) and isinstance(context.get("http"), dict)


def route(event: Mapping[str, Any]) -> tuple[object, bool]:
    """The direct-invoke payload for ``event``, and whether text in the answer is escaped
    (``POST /query``); raises :class:`ReadError` for a path or method the reader does not serve."""
    try:
        http = event["requestContext"]["http"]
        method = str(http.get("method", "")).upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
    except (KeyError, TypeError, AttributeError):
        raise InvalidRequestError("not a Function URL payload format 2.0 event") from None
    if path.rstrip("/") == "/query":
        if method != "POST":
            raise MethodNotAllowedError("use POST /query with a JSON body")
        return json_body(event), True
    if path.startswith(_COMMANDS) and len(path) > len(_COMMANDS):
        if method != "GET":
            raise MethodNotAllowedError("use GET /commands/{id}?db=<db>")
        query = event.get("queryStringParameters") or {}
        db = query.get("db") if isinstance(query, dict) else None
        return {"db": db, "command_id": unquote(path[len(_COMMANDS) :])}, False
    if path.startswith(_DATABASES) and len(path) > len(_DATABASES):
        if method != "GET":
            raise MethodNotAllowedError("use GET /databases/{db}")
        return {"db": unquote(path[len(_DATABASES) :]), "database_status": True}, False
    raise RouteNotFoundError(
        "the reader serves POST /query, GET /commands/{id} and GET /databases/{db}"
    )


def json_body(event: Mapping[str, Any]) -> object:
    """The event's body as JSON (base64-decoded when the event says so)."""
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


def response(answer: dict[str, Any]) -> dict[str, Any]:
    """The Function URL response for an answer: 200, or the error type's HTTP status."""
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
