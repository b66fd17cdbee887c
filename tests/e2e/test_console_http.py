"""The web console over plain HTTP, against a real ``efsqlite dev``: hostile and careless
requests each get a page and a status, never a dropped connection; writes need the console's
own forms; nothing a form refuses is sent.

(The browser tests in tests/console drive the same pages as a user would.)
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.e2e.conftest import Stack, run_cli, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(tmp_path_factory.mktemp("console-http"), databases="todo")


@pytest.fixture(scope="module")
def address(stack: Stack) -> tuple[str, int]:
    url = urlsplit(str(stack.endpoints["console_url"]))
    assert url.hostname == "127.0.0.1" and url.port
    return url.hostname, url.port


def request(
    address: tuple[str, int],
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(*address, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text
    finally:
        conn.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def own(address: tuple[str, int]) -> dict[str, str]:
    """The headers a browser sends with a form of the console's own page."""
    return {**FORM, "Origin": f"http://{address[0]}:{address[1]}", "Sec-Fetch-Site": "same-origin"}


def send_form(address: tuple[str, int], **fields: str) -> tuple[int, dict[str, str], str]:
    return request(address, "POST", "/send", urlencode(fields), own(address))


@pytest.mark.parametrize("path", ["/databases", "/query", "/commands", "/queues", "/send"])
def test_every_page_answers_with_the_no_script_policy(address: tuple[str, int], path: str) -> None:
    # GIVEN a page  WHEN it is fetched
    status, headers, text = request(address, "GET", path)
    # THEN it is HTML under a policy that allows no script, and its navigation is there
    assert status == 200, text
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert 'id="nav-databases"' in text and "<script" not in text


def test_a_host_that_is_not_loopback_is_refused(address: tuple[str, int]) -> None:
    # GIVEN a DNS name rebound to 127.0.0.1  WHEN a page is asked for under it
    status, _, text = request(address, "GET", "/databases", headers={"Host": "evil.example"})
    # THEN the console refuses it
    assert status == 421 and "loopback" in text
    assert request(address, "GET", "/databases", headers={"Host": "localhost:1"})[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["other-origin", "null-origin", "cross-site", "same-site"],
)
def test_a_form_from_another_site_is_refused_and_nothing_is_sent(
    address: tuple[str, int], stack: Stack, headers: dict[str, str]
) -> None:
    # GIVEN a valid command form  WHEN it is posted from another site
    fields = urlencode({"db": "todo", "kind": "named", "command": "add_todo", "args": "{}"})
    status, _, text = request(address, "POST", "/send", fields, {**FORM, **headers})
    # THEN it is refused and the queue holds nothing
    assert status == 403 and "another site" in text
    redrive = request(address, "POST", "/queues/redrive", "", {**FORM, **headers})
    assert redrive[0] == 403
    assert stack.queue_depth("queue_url") == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "expected"),
    [
        ("POST", "/send", "db=todo", {"Content-Type": "text/plain"}, 415),
        ("POST", "/send", "db=todo", {"Content-Type": "application/json"}, 415),
        ("GET", "/queues/redrive", None, {}, 405),
        ("POST", "/databases", "", FORM, 405),
        ("DELETE", "/send", None, {}, 405),
        ("PUT", "/queues/redrive", "x", {}, 405),
        ("OPTIONS", "/", None, {}, 405),
        ("GET", "/nope", None, {}, 404),
        ("GET", "/../../etc/passwd", None, {}, 404),
        ("GET", "/command?db=../../etc&id=x", None, {}, 400),
        ("GET", "/command?db=todo&id=" + "x" * 10_000, None, {}, 400),
        ("GET", "/command?db=todo", None, {}, 400),
    ],
)
def test_careless_requests_get_a_page_and_a_status(
    address: tuple[str, int],
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
    expected: int,
) -> None:
    # GIVEN a request the console does not serve  WHEN it is made
    status, answer_headers, text = request(address, method, path, body, headers)
    # THEN the answer says so with a page, under the same policy
    assert status == expected, text[:500]
    assert "content-security-policy" in answer_headers
    assert "Traceback" not in text


def test_a_huge_form_is_refused_before_it_is_read(address: tuple[str, int]) -> None:
    # GIVEN a form claiming 1 GB  WHEN only its headers are sent
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(
            b"POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000000000\r\n\r\ndb=todo"
        )
        answer = sock.recv(4096).decode("latin-1")
    # THEN the console answers 413 at once instead of waiting for a gigabyte
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_a_form_without_a_length_is_refused(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(
            b"POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        answer = sock.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 411"), answer[:200]


@pytest.mark.parametrize(
    "query",
    [
        "db=todo&sql=%ff%fe%00",
        "db=todo&sql=SELECT%201&params=%7Bnot%20json",
        "db=todo&sql=SELECT%20%3F&params=%5B%22%5Cud800%22%5D",
        "db=todo&sql=SELECT%201&min_position=-1",
        "db=todo&sql=SELECT%201&page=999999",
        "db=todo&sql=SELECT%201&page=-3",
        "db=%3Cscript%3E&sql=SELECT%201",
        "db=todo&named=%3Cb%3Enope",
        "&".join(f"f{i}=1" for i in range(100)),
        "db=todo&sql=" + "x" * 60_000,
    ],
    ids=[
        "bad-bytes",
        "params-not-json",
        "lone-surrogate",
        "bad-position",
        "page-beyond-the-cap",
        "negative-page",
        "markup-db",
        "markup-named",
        "many-fields",
        "long-sql",
    ],
)
def test_hostile_queries_get_a_typed_answer_shown_as_text(
    address: tuple[str, int], query: str
) -> None:
    # GIVEN a hostile query string  WHEN the query page is asked for it
    status, _, text = request(address, "GET", f"/query?{query}")
    # THEN the page answers (the reader's or the console's error in its box), no markup leaks
    assert status in (200, 400), text[:500]
    assert "<script>" not in text and "<b>nope" not in text
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def todo_db(stack: Stack) -> str:
    """The todo database, created by its first command."""
    sent = stack.cli(
        "send", "--db", "todo", "--command", "add_todo", "--args", '{"id": "t", "title": "t"}'
    )
    assert sent.returncode == 0, sent.stderr
    waited = stack.cli(
        "send", "--db", "todo", "--command", "delete_todo", "--args", '{"id": "t"}', "--wait"
    )
    assert waited.returncode == 0, waited.stderr
    return "todo"


def test_an_answer_the_reader_cut_at_its_byte_cap_says_so(
    address: tuple[str, int], todo_db: str
) -> None:
    # GIVEN a query whose first page (50 rows of 200 KB) is over the reader's 5 MB answer cap
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) "
        "SELECT i, printf('%.*c', 200000, 'x') AS big FROM n"
    )
    # WHEN the query page runs it
    status, _, text = request(address, "GET", "/query?" + urlencode({"db": todo_db, "sql": sql}))
    # THEN the rows the reader sent are shown, with its truncation said, and no next page
    assert status == 200, text[:500]
    assert 'id="truncated"' in text and "byte cap" in text
    assert 'id="next"' not in text
    shown = text.count("<tr><td>")
    assert 10 < shown < 50, shown


def test_a_form_the_console_cannot_use_is_shown_back_and_nothing_is_sent(
    address: tuple[str, int], stack: Stack
) -> None:
    # GIVEN forms with a mistake each
    cases = [
        ({"db": "todo", "kind": "named", "command": "add_todo", "args": "{oops"}, "not JSON"),
        ({"db": "todo", "kind": "named", "command": "add_todo", "args": "[1]"}, "an object"),
        ({"db": "no such db!", "kind": "named", "command": "add_todo"}, "db"),
        ({"db": "todo", "kind": "sql", "sql": ""}, "sql"),
        ({"db": "todo", "kind": "named", "command": "x", "expect_schema": "two"}, "whole"),
        ({"db": "todo", "kind": "named", "command": "x", "id": "x" * 500}, "id"),
    ]
    for fields, says in cases:
        # WHEN each is posted from the console's own page
        status, _, text = send_form(address, **fields)
        # THEN the form comes back with one line naming the field, and nothing is sent
        assert status == 422, (fields, text[:300])
        assert "nothing was sent" in text and says in text, (fields, text[:2000])
    assert stack.queue_depth("queue_url") == 0


def test_markup_in_a_refused_form_comes_back_as_text(address: tuple[str, int]) -> None:
    # GIVEN forms holding markup where the page shows it back: the field, the error message
    for fields, shown in [
        ({"args": "<img src=x onerror=alert(1)>"}, "&lt;img src=x onerror=alert(1)&gt;"),
        ({"db": "<script>x</script>", "args": "{}"}, "&lt;script&gt;x&lt;/script&gt;"),
    ]:
        # WHEN each is refused
        form = {"db": "todo", "kind": "named", "command": "add_todo", **fields}
        status, _, text = send_form(address, **form)
        # THEN the markup is on the page as text only
        assert status == 422, text[:500]
        assert shown in text
        assert "<img src=x" not in text and "<script>x" not in text


def test_the_redrive_button_with_an_empty_dlq_moves_nothing(address: tuple[str, int]) -> None:
    # GIVEN an empty DLQ  WHEN redrive is pressed
    status, headers, _ = request(address, "POST", "/queues/redrive", "", own(address))
    # THEN the console goes to the queues page, which reports the redrive
    assert status == 303 and headers["location"].startswith("/queues")
    deadline = time.monotonic() + 60
    page = ""
    while time.monotonic() < deadline and 'data-state="done"' not in page:
        time.sleep(0.2)
        page = request(address, "GET", "/queues")[2]
    assert "moved 0 message(s)" in page


def test_the_send_form_offers_the_declared_database(address: tuple[str, int]) -> None:
    # GIVEN a stack that declares one database by name and has not created it yet
    # WHEN the send form opens  THEN that name is filled in
    text = request(address, "GET", "/send")[2]
    assert 'name="db" id="field-db" value="todo"' in text


def test_a_console_port_in_use_stops_the_stack_with_one_line(tmp_path: Path) -> None:
    # GIVEN the console's port taken by another program
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # WHEN a stack starts with it
        ports = ["--sqs-port", "0", "--lambda-port", "0", "--url-port", "0"]
        data = tmp_path / "data"
        run = run_cli(
            "dev", "--data-dir", str(data), *ports, "--console-port", str(port), timeout=120
        )
    # THEN it exits 1 with one line naming the port and the ways out, and leaves nothing behind
    assert run.returncode == 1, run.stderr
    assert f"cannot serve the console on 127.0.0.1:{port}" in run.stderr
    assert "--no-console" in run.stderr and "Traceback" not in run.stderr
    assert not (data / "endpoints.json").exists()


def test_the_console_port_is_in_the_endpoints_file(stack: Stack, address: tuple[str, int]) -> None:
    saved = Path(stack.data_dir / "endpoints.json").read_text()
    assert f'"console_url": "http://127.0.0.1:{address[1]}/"' in saved
