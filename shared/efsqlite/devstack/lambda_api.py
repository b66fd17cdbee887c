"""The local stack's reader: Lambda's Invoke API and a Function URL, over one real handler.

``POST /2015-03-31/functions/{name}/invocations`` is the path the Lambda service serves (and
``sam local start-lambda``), so a stock ``boto3.client("lambda", endpoint_url=...)`` invokes the
reader unchanged. A second server answers like a Function URL: it builds the payload format 2.0
event and maps the handler's answer back to HTTP.

Concurrency is Lambda's: each execution environment is a separately loaded copy of the handler
module serving one request at a time; a request that finds them all busy gets a new one (a cold
start), up to a limit. Each environment has its own snapshot folder, as each Lambda has its
own ``/tmp``.

DO answer an unhandled exception the way Lambda does: HTTP 200 with ``X-Amz-Function-Error``
(Invoke) or HTTP 502 (Function URL). DON'T let it escape into the HTTP server.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from efsqlite.devstack.exceptions import LocalStackError
from efsqlite.devstack.poller import LambdaContext, load_handler_module, unload_handler_module

log = logging.getLogger("efsqlite.devstack.stack.reader")

#: Lambda's synchronous response payload limit.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
_ENV_LOCK = threading.Lock()
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


class FunctionPool:
    """The execution environments of one function."""

    def __init__(
        self,
        handler_path: Path,
        function_name: str,
        *,
        environment: Callable[[int], Mapping[str, str]] = lambda _n: {},
        max_environments: int = 4,
        timeout_s: float = 30.0,
    ) -> None:
        self.handler_path = handler_path
        self.function_name = function_name
        self.environment = environment
        self.max_environments = max_environments
        self.timeout_s = timeout_s
        self._idle: list[ModuleType] = []
        self._count = 0
        self._lock = threading.Condition()
        self.cold_starts = 0

    def warm_up(self) -> None:
        """One cold start now, so a broken handler is reported when the stack starts."""
        with self._lock:
            self._count += 1
            number = self._count
        self._idle.append(self._new_environment(number))

    def _new_environment(self, number: int) -> ModuleType:
        overrides = dict(self.environment(number))
        with _ENV_LOCK:
            # The handler reads its settings at import (cold start): give this environment
            # its own values for that moment only.
            saved = {key: os.environ.get(key) for key in overrides}
            os.environ.update(overrides)
            try:
                module = load_handler_module(self.handler_path, f"reader{number}")
            except BaseException:
                with self._lock:
                    self._count -= 1
                    self._lock.notify()
                raise
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        self.cold_starts += 1
        log.info("reader environment %d started (cold start)", number)
        return module

    def _acquire(self) -> ModuleType:
        with self._lock:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._count < self.max_environments:
                    self._count += 1  # reserve the slot before the (slow) cold start
                    number = self._count
                    break
                self._lock.wait()
        return self._new_environment(number)

    def _release(self, module: ModuleType) -> None:
        with self._lock:
            self._idle.append(module)
            self._lock.notify()

    def invoke(self, event: Any) -> Any:
        """Run the handler in a free environment; exceptions propagate (the caller maps them)."""
        module = self._acquire()
        try:
            return module.lambda_handler(event, LambdaContext(self.function_name, self.timeout_s))
        finally:
            self._release(module)

    def close(self) -> None:
        with self._lock:
            for module in self._idle:
                unload_handler_module(module)
            self._idle.clear()


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": str(uuid.uuid4()),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "efsqlite-local"
    #: Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed
    #: ACK held the body back about 40 ms per invoke (``import --wait`` asks once per chunk).
    disable_nagle_algorithm = True
    pool: FunctionPool

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not headers or "Content-Type" not in headers:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class InvokeHandler(_Handler):
    """The Lambda Invoke API, for one function name."""

    def do_POST(self) -> None:
        body = self._body()
        match = _INVOKE_PATH.match(urlsplit(self.path).path)
        if match is None:
            self._api_error(404, "UnknownOperationException", f"unknown path {self.path}")
            return
        name = unquote(match.group(1))
        if name.startswith("arn:"):
            parts = name.split(":")
            name = parts[6] if len(parts) > 6 else name
        if name != self.pool.function_name:
            self._api_error(
                404, "ResourceNotFoundException", f"Function not found: {name} (local stack)"
            )
            return
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            self._api_error(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: {exc}",
            )
            return
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "DryRun":
            self._send(204, b"")
            return
        if invocation_type == "Event":
            threading.Thread(target=self._run_quietly, args=(event,), daemon=True).start()
            self._send(202, b"")
            return
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        try:
            result = self.pool.invoke(event)
            payload = json.dumps(result).encode()
        except Exception as exc:
            log.warning("reader raised %s: %s", type(exc).__name__, exc)
            headers["X-Amz-Function-Error"] = "Unhandled"
            self._send(200, json.dumps(_error_payload(exc)).encode(), headers)
            return
        if len(payload) > MAX_RESPONSE_BYTES:
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = json.dumps(
                {
                    "errorMessage": f"Response payload size ({len(payload)} bytes) exceeded "
                    f"maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
            ).encode()
        self._send(200, payload, headers)

    def _run_quietly(self, event: Any) -> None:
        try:
            self.pool.invoke(event)
        except Exception as exc:
            log.warning("async reader invocation raised %s: %s", type(exc).__name__, exc)

    def _api_error(self, status: int, error_type: str, message: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode()
        self._send(status, body, {"x-amzn-ErrorType": error_type})


class FunctionUrlHandler(_Handler):
    """A Function URL: any method and path, as a payload format 2.0 event."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def _serve(self) -> None:
        event = function_url_event(
            method=self.command,
            target=self.path,
            headers=[(k, v) for k, v in self.headers.items()],
            body=self._body(),
            source_ip=self.client_address[0],
            host=self.headers.get("Host", "localhost"),
        )
        try:
            result = self.pool.invoke(event)
        except Exception as exc:
            log.warning("reader raised %s: %s", type(exc).__name__, exc)
            self._send(502, b'{"Message":"Internal Server Error"}')
            return
        status, headers, body = function_url_response(result)
        self._send(status, body, headers)


def function_url_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    """The payload format 2.0 event a Function URL hands its function."""
    split = urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    # What the Function URL front end adds (plain HTTP on loopback, so proto http).
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-proto", "http")
    joined.setdefault("x-forwarded-port", host.rpartition(":")[2] if ":" in host else "80")
    joined.setdefault("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    url_id = "efsqlitelocal"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": split.path or "/",
        "rawQueryString": split.query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": host,
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": split.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        content_type = joined.get("content-type", "")
        text: str | None = None
        if not content_type or content_type.startswith(_TEXT_TYPES):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


def function_url_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Map a handler's answer to HTTP as a Function URL does."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        raw = result.get("body")
        if raw is None:
            body = b""
        elif result.get("isBase64Encoded"):
            body = base64.b64decode(str(raw))
        else:
            body = (raw if isinstance(raw, str) else json.dumps(raw)).encode()
        headers.setdefault("Content-Type", headers.pop("content-type", "application/json"))
        for cookie in result.get("cookies") or []:
            headers.setdefault("Set-Cookie", str(cookie))
        return int(result["statusCode"]), headers, body
    # Without statusCode, a Function URL answers 200 with the JSON of whatever came back.
    return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()


class ReaderApi:
    """Both reader front doors, each on its own loopback port."""

    def __init__(self, pool: FunctionPool, *, host: str, invoke_port: int, url_port: int) -> None:
        self.pool = pool
        self.host = host
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.invoke_port = invoke_port
        self.url_port = url_port

    def start(self) -> None:
        invoke = type("Invoke", (InvokeHandler,), {"pool": self.pool})
        url = type("FunctionUrl", (FunctionUrlHandler,), {"pool": self.pool})
        for port, handler in ((self.invoke_port, invoke), (self.url_port, url)):
            try:
                server = _Server((self.host, port), handler)
            except OSError as exc:
                self.stop()
                raise LocalStackError(
                    f"cannot serve the reader on {self.host}:{port}: {exc.strerror}; pass "
                    "another --lambda-port / --url-port (0 picks a free one)"
                ) from None
            self._servers.append(server)
        self.invoke_port = self._servers[0].server_address[1]
        self.url_port = self._servers[1].server_address[1]
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def invoke_endpoint(self) -> str:
        return f"http://{self.host}:{self.invoke_port}"

    @property
    def function_url(self) -> str:
        return f"http://{self.host}:{self.url_port}/"

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
