"""The console's parts without a stack: escaping, pages from hand-made values, paging, forms.

The same behaviours run through a real ``efsqlite dev`` in tests/e2e/test_console_http.py and
in a real browser in tests/console.
"""

from __future__ import annotations

import http.client
import threading
from typing import Any, cast

import pytest
from efsqlite.client import CommandStatus, Endpoints
from efsqlite.client.exceptions import QueueError
from efsqlite.client.queues import PeekedMessage
from efsqlite.client.redrive import RedriveProgress, RedriveResult
from efsqlite.client.status import DatabaseStatus
from efsqlite.console import pages
from efsqlite.console.data import (
    PAGE_ROWS,
    DatabaseView,
    InvalidFormError,
    Problem,
    QueueView,
    RedriveTask,
    TableView,
    json_field,
    page_of,
    quote_name,
)
from efsqlite.console.html import Html, escape, href, join, tag
from efsqlite.console.server import ConsoleServer, Routes, _host_name
from efsqlite.core.position import Position
from efsqlite.read.answers import QueryResult

MARKUP = "<script>alert('x')</script>\"&"
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;"


# -- html ------------------------------------------------------------------------------------
def test_values_are_escaped_in_text_and_in_attributes() -> None:
    # GIVEN a value holding markup and quotes  WHEN it is a child and an attribute
    page = tag("p", MARKUP, title=MARKUP, data_x=MARKUP)
    # THEN both are escaped, quotes included, and the attribute names are spelled for HTML
    assert page == f'<p title="{ESCAPED}" data-x="{ESCAPED}">{ESCAPED}</p>'


def test_markup_built_by_tag_nests_without_escaping_twice() -> None:
    inner = tag("b", "<i>")
    assert tag("p", inner, ["a", None, 3, [tag("br")]]) == "<p><b>&lt;i&gt;</b>a3<br></p>"
    assert isinstance(join(["x"]), Html) and escape(inner) is inner


def test_boolean_attributes_are_bare_or_left_out() -> None:
    assert tag("option", "a", selected=True, disabled=False, value=None) == (
        "<option selected>a</option>"
    )
    assert tag("td", "x", class_="null") == '<td class="null">x</td>'


def test_links_encode_their_query_and_leave_out_empty_values() -> None:
    assert href("/query", {"db": "todo", "sql": "SELECT 'a&b'", "page": None, "q": ""}) == (
        "/query?db=todo&sql=SELECT+%27a%26b%27"
    )
    assert href("/queues") == "/queues"
    assert tag("a", "x", href=href("/q", {"v": '"><script>'})) == (
        '<a href="/q?v=%22%3E%3Cscript%3E">x</a>'
    )


def test_names_are_quoted_as_sql_identifiers() -> None:
    assert quote_name('a"b') == '"a""b"'


# -- pages -----------------------------------------------------------------------------------
def test_a_problem_is_shown_as_the_reader_gave_it_escaped() -> None:
    box = pages.problem_box(Problem("NotYetAtPosition", MARKUP, True, {"position": "12"}))
    assert 'data-error-type="NotYetAtPosition"' in box
    assert ESCAPED in box and "<script>" not in box
    assert "<code>true</code>" in box and "<code>position</code>: &quot;12&quot;" in box


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, '<td class="null">NULL</td>'),
        ({"$blob": "AAob/w=="}, '<td class="blob">x&#x27;000a1bff&#x27;</td>'),
        (1.5, "<td>1.5</td>"),
        (True, "<td>true</td>"),
        ("<b>", "<td>&lt;b&gt;</td>"),
    ],
)
def test_cells_show_sqlite_values(value: Any, shown: str) -> None:
    assert pages.cell(value) == shown


def test_a_long_cell_is_cut_with_the_value_in_its_title() -> None:
    text = "y" * 2000
    shown = pages.cell(text)
    assert shown.count("y") == pages.MAX_CELL_CHARS - 1 + 2000


def test_the_databases_page_escapes_names_it_did_not_choose() -> None:
    # GIVEN a table whose name is markup (a migration may create any name)
    status = DatabaseStatus(position="7", schema_version=1, outcomes={"applied": 2}, via="reader")
    view = DatabaseView("todo", status, 4096, [TableView(MARKUP, "table", [MARKUP], 3)])
    # WHEN the page renders  THEN the name is text, its query link encoded
    page = pages.databases_page([view], None, "todo")
    assert "<script>" not in page and ESCAPED in page
    assert "2 applied" in page and "4.0 KiB" in page


def test_the_command_page_refreshes_until_the_command_settles() -> None:
    pending = CommandStatus("c1", "pending", error_type="SchemaNotReady", error_message="m")
    applied = CommandStatus("c1", "applied", position=Position.parse("5"))
    assert 'http-equiv="refresh"' in pages.command_page("todo", "c1", status=pending)
    page = pages.command_page("todo", "c1", status=applied)
    assert 'http-equiv="refresh"' not in page and 'data-state="applied"' in page


def test_the_queues_page_shows_a_dlq_message_with_its_ledger_error() -> None:
    # GIVEN a DLQ message whose command is failing in the ledger
    body = '{"v":1,"id":"p1","db":"todo","command":"x","args":{"t":"<b>"}}'
    failing = CommandStatus("p1", "in_dlq", error_type="SchemaNotReady", error_message="v2")
    view = QueueView(None, None, [PeekedMessage("m1", body, "todo", 4, 0)], {"p1": failing}, {})
    task = RedriveTask(lambda _on: RedriveResult(0, "by hand"))
    # WHEN the page renders
    page = pages.queues_page(view, task)
    # THEN the message, its receives and the ledger's error are there, the body as text
    assert 'data-message-id="m1"' in page and "SchemaNotReady: v2" in page
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert 'http-equiv="refresh"' not in page


# -- data ------------------------------------------------------------------------------------
def answer(rows: int, truncated: bool) -> QueryResult:
    return QueryResult(["n"], [[i] for i in range(rows)], Position.parse("1"), 1, truncated)


@pytest.mark.parametrize(
    ("rows", "truncated", "page", "shown", "has_next", "cut"),
    [
        (10, False, 1, 10, False, False),
        (PAGE_ROWS, True, 1, PAGE_ROWS, True, False),
        (PAGE_ROWS, False, 1, PAGE_ROWS, False, False),
        (2 * PAGE_ROWS, True, 2, PAGE_ROWS, True, False),
        (PAGE_ROWS + 7, False, 2, 7, False, False),
        (PAGE_ROWS + 7, True, 2, 7, False, True),
        (3, True, 1, 3, False, True),
    ],
)
def test_a_page_of_an_answer(
    rows: int, truncated: bool, page: int, shown: int, has_next: bool, cut: bool
) -> None:
    found = page_of(answer(rows, truncated), page)
    assert len(found.rows) == shown and (found.has_next, found.cut_by_bytes) == (has_next, cut)
    if shown:
        assert found.rows[0] == [(page - 1) * PAGE_ROWS]


@pytest.mark.parametrize(
    ("text", "kinds", "expected"),
    [("", (list, dict), None), ("[1]", (list, dict), [1]), ('{"a": 1}', (dict,), {"a": 1})],
)
def test_json_fields(text: str, kinds: tuple[type, ...], expected: Any) -> None:
    assert json_field(text, "params", kinds=kinds) == expected


@pytest.mark.parametrize(
    ("text", "says"), [("{oops", "not JSON"), ("[1]", "must be an object"), ("3", "object")]
)
def test_json_fields_name_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidFormError, match=says):
        json_field(text, "args", kinds=(dict,))


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ('{"v":1,"id":"a","db":"x"}', ["a"]),
        ('{"v":1,"db":"x","commands":[{"id":"a"},{"id":"b"},{"id":3},7]}', ["a", "b"]),
        ("not json", []),
        ("[1, 2]", []),
        ('{"commands": "x"}', []),
    ],
)
def test_a_dlq_message_names_the_commands_it_carries(body: str, ids: list[str]) -> None:
    assert PeekedMessage("m", body, "x", 1, None).command_ids() == ids


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:4769", "127.0.0.1"),
        ("LOCALHOST:1", "localhost"),
        ("[::1]:4769", "[::1]"),
        ("evil.example", "evil.example"),
        ("127.0.0.1.evil.example:80", "127.0.0.1.evil.example"),
        ("", ""),
    ],
)
def test_the_host_header_is_read_without_its_port(header: str, host: str) -> None:
    assert _host_name(header) == host


def test_endpoints_from_a_dict_ignore_keys_they_do_not_know() -> None:
    found = Endpoints.from_dict({"queue_url": "q", "console_url": "c", "databases_dir": "/d"})
    assert (found.queue_url, str(found.databases_dir), found.source) == ("q", "/d", "explicit")


def test_one_redrive_runs_at_a_time_and_its_outcome_is_kept() -> None:
    # GIVEN a redrive that waits until released
    release = threading.Event()

    def run(on: dict[str, Any]) -> RedriveResult:
        on["on_progress"](RedriveProgress("by hand", 1))
        release.wait(10)
        return RedriveResult(1, "by hand", dlq_before=1, dlq_after=0)

    task = RedriveTask(run)
    # WHEN it is started twice  THEN the second start is refused while the first runs
    assert task.start() is True
    assert task.start() is False and task.running
    release.set()
    task.join(10)
    assert not task.running and task.result is not None and task.result.moved == 1
    assert task.progress == RedriveProgress("by hand", 1)
    # and a failing redrive keeps its error for the page
    failing = RedriveTask(lambda _on: (_ for _ in ()).throw(OSError("queue gone")))
    failing.start()
    failing.join(10)
    assert failing.problem == Problem("OSError", "queue gone")


class _Broken:
    """A console whose stack does not answer (the queue) or whose code fails (a bug)."""

    declared = "*"

    def databases(self) -> Any:
        raise QueueError("cannot reach the queue http://127.0.0.1:1/q: connection refused")

    def queues(self) -> Any:
        raise KeyError("a bug")


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/databases", 502, "the stack did not answer: Queue: cannot reach the queue"),
        ("/queues", 500, "the console failed on this page: KeyError"),
    ],
)
def test_a_failing_page_is_a_page_with_its_status(path: str, status: int, says: str) -> None:
    # GIVEN the console's server over a console that fails
    server = ConsoleServer(("127.0.0.1", 0), Routes(cast(Any, _Broken())))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # WHEN a page is asked for
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
        conn.request("GET", path)
        answer = conn.getresponse()
        text = answer.read().decode()
        # THEN the answer is a page saying why, with its status, not a dropped connection
        assert answer.status == status and says in text
    finally:
        server.shutdown()
        server.server_close()
