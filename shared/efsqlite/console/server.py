"""The console's HTTP server: routes to :mod:`~efsqlite.console.pages`, on loopback only.

Pages are GET and read-only; two POSTs write, ``/send`` (a command, through the client's
``WriteClient``) and ``/queues/redrive`` (the redrive ``efsqlite redrive`` runs). A POST
answers ``303 See Other`` to the page that watches what it started.

A page on another site must not be able to use the console through the user's browser, so:

- the ``Host`` header must name a loopback host (``127.0.0.1``, ``localhost``, ``[::1]``): a
  DNS name rebound to 127.0.0.1 is refused (421);
- a POST must come from the console's own pages: its ``Origin`` (when sent, and browsers
  send it on every cross-site POST) must be the console's, and ``Sec-Fetch-Site`` (when sent)
  ``same-origin`` or ``none``; a form body only, at most :data:`MAX_BODY_BYTES`;
- every answer carries a Content-Security-Policy with no script at all, so markup that got
  into a page could not run even if escaping failed (it does not: :mod:`.html`).

DO answer every request, whatever its bytes, with a page and a status: a handler's error is a
500 page naming its type, logged with its traceback, never a dropped connection.
DON'T bind anything but a loopback address.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from efsqlite.client import Bookmark
from efsqlite.client.exceptions import ReaderInvokeError, ReadRequestError
from efsqlite.console import pages
from efsqlite.console.data import (
    Console,
    QueryForm,
    SendForm,
    form_value,
    problem_of,
)
from efsqlite.console.exceptions import ConsoleError
from efsqlite.console.html import href
from efsqlite.core.exceptions import EfsqliteError
from efsqlite.core.names import check_db_name, is_command_id

log = logging.getLogger("efsqlite.console")

#: The largest form the console reads: a command of SQS's 1 MiB, form-encoded (up to 3x).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Query-string fields read at most (a hostile URL cannot make a huge dict).
MAX_FIELDS = 32
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": under it Chromium sends "Origin: null" on the console's own POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Fields = Mapping[str, list[str]]


class Answer:
    """What a route answers: a page and its status, or a redirect."""

    def __init__(
        self,
        body: str,
        status: int = 200,
        *,
        content_type: str = "text/html; charset=utf-8",
        location: str | None = None,
    ) -> None:
        self.body = body.encode("utf-8")
        self.status = status
        self.content_type = content_type
        self.location = location

    @classmethod
    def redirect(cls, location: str) -> Answer:
        return cls("", HTTPStatus.SEE_OTHER, location=location)

    @classmethod
    def refused(cls, status: int, message: str) -> Answer:
        title = HTTPStatus(status).phrase
        return cls(pages.message_page(title, message, status=status), status)


def _fields(query: str) -> dict[str, list[str]] | Answer:
    """The fields of a query string or a form, or a 400 page when there are too many."""
    try:
        return parse_qs(query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return Answer.refused(
            HTTPStatus.BAD_REQUEST, f"a request takes at most {MAX_FIELDS} fields"
        )


def _page_number(fields: Fields) -> int:
    text = form_value(fields, "page")
    return int(text) if text.isdigit() and 0 < len(text) <= 6 else 1


def _db(fields: Fields) -> str:
    """The ``db`` field if it is a valid database name, else ''."""
    name = form_value(fields, "db")
    try:
        return check_db_name(name)
    except EfsqliteError:
        return ""


class Routes:
    """One function per page; each takes the parsed fields and returns an :class:`Answer`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.get: dict[str, Callable[[Fields], Answer]] = {
            "/": lambda _fields: Answer.redirect("/databases"),
            "/databases": self.databases,
            "/query": self.query,
            "/commands": self.commands,
            "/command": self.command,
            "/queues": self.queues,
            "/send": self.send_form,
            "/style.css": lambda _fields: Answer(pages.STYLE, content_type="text/css"),
        }
        self.post: dict[str, Callable[[Fields], Answer]] = {
            "/send": self.send,
            "/queues/redrive": self.redrive,
        }

    def databases(self, _fields: Fields) -> Answer:
        views, sqlite = self.console.databases()
        return Answer(pages.databases_page(views, sqlite, self.console.declared))

    def query(self, fields: Fields) -> Answer:
        form = QueryForm(
            db=form_value(fields, "db"),
            sql=form_value(fields, "sql"),
            named=form_value(fields, "named"),
            params=form_value(fields, "params"),
            min_position=form_value(fields, "min_position"),
            page=_page_number(fields),
        )
        names = self.console.database_names()
        if not form.db and names:
            form = replace(form, db=names[0])
        answer = problem = None
        if form.sql or form.named:
            try:
                answer = self.console.query(form)
            except EfsqliteError as exc:
                problem = problem_of(exc)
        page = pages.query_page(
            form, names, self.console.named_queries(), answer=answer, problem=problem
        )
        return Answer(page)

    def commands(self, fields: Fields) -> Answer:
        names = self.console.database_names()
        db = _db(fields) or (names[0] if names else "")
        search = form_value(fields, "q").strip()[:200]
        page = _page_number(fields)
        status = found = problem = None
        recent: list[Any] = []
        has_next = False
        if db:
            status = self.console.database_status(db)
            try:
                recent, has_next = self.console.recent_commands(db, search=search, page=page)
            except (ReadRequestError, ReaderInvokeError) as exc:
                problem = problem_of(exc)
            if search and is_command_id(search):
                try:
                    found = self.console.command_status(db, search)
                except (ReadRequestError, ReaderInvokeError) as exc:
                    problem = problem or problem_of(exc)
        return Answer(
            pages.commands_page(
                db,
                names,
                search,
                status=status,
                recent=recent,
                page=page,
                has_next=has_next,
                problem=problem,
                found=found,
            )
        )

    def command(self, fields: Fields) -> Answer:
        db = _db(fields)
        command_id = form_value(fields, "id")
        if not db or not is_command_id(command_id):
            return Answer.refused(
                HTTPStatus.BAD_REQUEST, "a command page needs a valid db and a command id"
            )
        status = problem = None
        try:
            status = self.console.command_status(db, command_id)
        except (ReadRequestError, ReaderInvokeError) as exc:
            problem = problem_of(exc)
        bookmark = None
        sequence = form_value(fields, "sent")
        if sequence:
            bookmark = Bookmark(db, command_id, form_value(fields, "message"), sequence)
        return Answer(
            pages.command_page(db, command_id, status=status, problem=problem, bookmark=bookmark)
        )

    def queues(self, fields: Fields) -> Answer:
        started = {"1": True, "0": False}.get(form_value(fields, "started"))
        view = self.console.queues()
        return Answer(pages.queues_page(view, self.console.redrive_task, started=started))

    def send_form(self, fields: Fields) -> Answer:
        names = self.console.database_names()
        form = SendForm(db=_db(fields) or (names[0] if names else self._declared_name()))
        return Answer(pages.send_page(form, names, sorted(self.console.commands, key=_name)))

    def _declared_name(self) -> str:
        """The one database the stack declares, if it declares one by name (not a pattern)."""
        return _db({"db": [self.console.declared]})

    def send(self, fields: Fields) -> Answer:
        form = SendForm(
            db=form_value(fields, "db").strip(),
            kind="sql" if form_value(fields, "kind") == "sql" else "named",
            command=form_value(fields, "command").strip(),
            args=form_value(fields, "args"),
            sql=form_value(fields, "sql"),
            params=form_value(fields, "params"),
            id=form_value(fields, "id"),
            expect_schema=form_value(fields, "expect_schema"),
        )
        try:
            bookmark = self.console.send(form)
        except EfsqliteError as exc:
            names = self.console.database_names()
            page = pages.send_page(
                form, names, sorted(self.console.commands, key=_name), problem=problem_of(exc)
            )
            return Answer(page, HTTPStatus.UNPROCESSABLE_ENTITY)
        return Answer.redirect(
            href(
                "/command",
                {
                    "db": bookmark.db,
                    "id": bookmark.id,
                    "sent": bookmark.sequence_number,
                    "message": bookmark.message_id,
                },
            )
        )

    def redrive(self, _fields: Fields) -> Answer:
        started = self.console.redrive_task.start()
        return Answer.redirect(href("/queues", {"started": "1" if started else "0"}))


def _name(spec: Any) -> str:
    return str(spec.name)


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_HEAD(self) -> None:
        self._send(Answer.refused(HTTPStatus.METHOD_NOT_ALLOWED, "use GET"), head=True)

    def _other(self) -> None:
        self._send(
            Answer.refused(HTTPStatus.METHOD_NOT_ALLOWED, "the console answers GET and POST")
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    def _serve(self, method: str) -> None:
        try:
            answer = self._route(method)
        except EfsqliteError as exc:  # the queue or the reader did not answer
            answer = Answer.refused(
                HTTPStatus.BAD_GATEWAY,
                f"the stack did not answer: {problem_of(exc).error_type}: {exc}",
            )
        except Exception as exc:  # a page, never a dropped connection
            log.exception("console: %s %s failed", method, self.path[:200])
            answer = Answer.refused(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"the console failed on this page: {type(exc).__name__}: {exc}",
            )
        self._send(answer)

    def _route(self, method: str) -> Answer:
        host = _host_name(self.headers.get("Host", ""))
        if host not in LOOPBACK_HOSTS:
            return Answer.refused(
                HTTPStatus.MISDIRECTED_REQUEST,
                "the console answers only requests for a loopback host (127.0.0.1, localhost)",
            )
        url = urlsplit(self.path)
        routes = self.server.routes.get if method == "GET" else self.server.routes.post
        route = routes.get(url.path)
        if route is None:
            known = self.server.routes.post if method == "GET" else self.server.routes.get
            if url.path in known:
                return Answer.refused(
                    HTTPStatus.METHOD_NOT_ALLOWED, f"{url.path} takes no {method}"
                )
            return Answer.refused(HTTPStatus.NOT_FOUND, f"no page {url.path[:200]}")
        fields = _fields(url.query) if method == "GET" else self._check_post()
        return fields if isinstance(fields, Answer) else route(fields)

    def _check_post(self) -> Answer | dict[str, list[str]]:
        """The POST's form fields, or why the console refuses it."""
        origin = self.headers.get("Origin")
        own = f"http://{self.headers.get('Host', '')}"
        if origin is not None and origin != own:
            return Answer.refused(HTTPStatus.FORBIDDEN, "a form from another site is refused")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return Answer.refused(HTTPStatus.FORBIDDEN, "a form from another site is refused")
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return Answer.refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the console takes its own forms only"
            )
        length_text = self.headers.get("Content-Length", "")
        if not length_text.isdigit():
            return Answer.refused(HTTPStatus.LENGTH_REQUIRED, "a form needs a Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return Answer.refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"a form of {length} bytes; the console reads at most {MAX_BODY_BYTES}",
            )
        body = self.rfile.read(length)
        return _fields(body.decode("utf-8", errors="replace"))

    def _send(self, answer: Answer, *, head: bool = False) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if answer.location is not None:
            self.send_header("Location", answer.location)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(answer.body)


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:8080`` -> ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True
    # A page can wait on the reader for seconds; keep the listen backlog of a busy browser.
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], routes: Routes) -> None:
        self.routes = routes
        super().__init__(address, _Handler)


def serve(console: Console, host: str, port: int) -> tuple[ConsoleServer, threading.Thread]:
    """Start the console on ``host:port`` (a loopback address) in a thread; returns the server
    (``shutdown()`` stops it) and its thread. Raises :class:`ConsoleError` if it cannot bind."""
    if _host_name(host) not in LOOPBACK_HOSTS:
        raise ConsoleError(f"the console serves loopback only, not {host!r}")
    try:
        server = ConsoleServer((host, port), Routes(console))
    except OSError as exc:
        raise ConsoleError(
            f"cannot serve the console on {host}:{port}: {exc.strerror or exc}; "
            "pick another --console-port, or --no-console"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="console", daemon=True)
    thread.start()
    return server, thread
