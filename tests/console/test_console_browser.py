"""The web console in a real browser: headless Chromium against a real ``efsqlite dev``.

The tests run in order on one stack, as a new user would do the README quickstart from the
browser: send a command from the form and watch it apply, query it (a value holding
``<script>`` shows as text), break SQL and see the reader's typed error, page through rows,
read at a position, watch a failing command go pending then to the DLQ while it blocks its
group, ship the migration and redrive from the button (applied once).

Each page's screenshot is saved as it is reached (``EFSQLITE_CONSOLE_SHOTS=docs/console``, as
``make console-shots`` sets it, writes the ones docs/console.md shows).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select

from tests.console.conftest import save_screenshot, wait_for, wait_for_text
from tests.e2e.conftest import EXAMPLE, Stack, running_stack

#: A title that is markup: it must render as these characters, never run.
SCRIPT_TITLE = "<script>window.pwned = 1</script><b>milk</b>"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # 4 receives 2 s apart: a failing command stays pending long enough to be seen blocking.
    yield from running_stack(
        tmp_path_factory.mktemp("console-stack"),
        visibility_timeout=2,
        max_receive_count=4,
        databases="todo",
    )


@pytest.fixture(scope="module")
def console(stack: Stack) -> str:
    url = str(stack.endpoints["console_url"])
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    return url.rstrip("/")


def follow(browser: webdriver.Chrome, by: str, value: str) -> None:
    """Click what leads to another page, and wait until that page has loaded (reading the
    old page's elements after a click is a race)."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(by, value).click()
    wait_for(browser, staleness_of(old), what=f"the page after clicking {value!r}")
    wait_for(
        browser,
        lambda b: b.execute_script("return document.readyState") == "complete",
        what="the page to load",
    )


def fill(browser: webdriver.Chrome, field: str, text: str) -> None:
    element = browser.find_element(By.ID, f"field-{field}")
    element.clear()
    element.send_keys(text)


def send_named(
    browser: webdriver.Chrome,
    console: str,
    command: str,
    args: str,
    *,
    command_id: str = "",
    expect_schema: str = "",
) -> None:
    browser.get(f"{console}/send")
    fill(browser, "db", "todo")
    browser.find_element(By.ID, "kind-named").click()
    Select(browser.find_element(By.ID, "field-command")).select_by_value(command)
    fill(browser, "args", args)
    fill(browser, "id", command_id)
    fill(browser, "expect_schema", expect_schema)
    follow(browser, By.ID, "send")


def state_of(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "command-state").get_attribute("data-state"))


def wait_for_state(browser: webdriver.Chrome, state: str, timeout: float = 60.0) -> None:
    """The command page refreshes itself; wait until it shows ``state``."""
    wait_for(
        browser,
        lambda b: state_of(b) == state,
        timeout,
        what=f"the command to be {state}",
    )


def run_query(browser: webdriver.Chrome, console: str, sql: str, **fields: str) -> None:
    browser.get(f"{console}/query")
    Select(browser.find_element(By.ID, "field-db")).select_by_value("todo")
    fill(browser, "sql", sql)
    for name, value in fields.items():
        fill(browser, name, value)
    follow(browser, By.ID, "run")
    wait_for(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#answer, .problem"),
        what="the query's answer or error",
    )


def problem_text(browser: webdriver.Chrome) -> str:
    """The error box's text, if the page shows one (for assertion messages)."""
    return " | ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".problem"))


def result_rows(browser: webdriver.Chrome) -> list[list[str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#result tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def test_a_command_sent_from_the_form_reaches_applied(
    browser: webdriver.Chrome, console: str, screenshots: Path
) -> None:
    # GIVEN the send form  WHEN a named command goes out from it
    browser.get(f"{console}/send")
    save_screenshot(browser, screenshots, "send")
    send_named(browser, console, "add_todo", f'{{"id": "t1", "title": "{SCRIPT_TITLE}"}}')
    # THEN the command page shows its bookmark and watches it until the writer applies it
    assert browser.find_element(By.ID, "sequence-number").text.isdigit()
    wait_for_state(browser, "applied")
    wait_for_text(browser, "#command-state", "applied at position")
    save_screenshot(browser, screenshots, "command")


def test_a_query_shows_rows_and_markup_as_text(
    browser: webdriver.Chrome, console: str, stack: Stack, screenshots: Path
) -> None:
    # GIVEN the todo written through the form, its title holding a <script> element
    # WHEN it is queried from the query page
    run_query(browser, console, "SELECT id, title, done FROM todos")
    # THEN it is a row of the result, the title shown as the characters it holds
    wait_for_text(browser, "#result", "t1")
    assert result_rows(browser) == [["t1", SCRIPT_TITLE, "0"]]
    # and nothing of it became markup: no script ran, no element was made of it
    assert browser.execute_script("return window.pwned === undefined") is True
    assert browser.find_elements(By.CSS_SELECTOR, "main script, #result b") == []
    facts = browser.find_element(By.CSS_SELECTOR, "#answer .answer-facts").text
    assert "schema version 1" in facts and "1 row(s)" in facts
    save_screenshot(browser, screenshots, "query")


def test_an_sql_error_is_shown_typed_as_the_reader_answers_it(
    browser: webdriver.Chrome, console: str
) -> None:
    # GIVEN the query page  WHEN the SQL does not parse
    run_query(browser, console, "SELEC id FROM todos")
    # THEN the reader's error type, message and retryable flag are on the page
    box = browser.find_element(By.CSS_SELECTOR, ".problem")
    assert box.get_attribute("data-error-type") == "SQLError"
    assert "syntax error" in box.find_element(By.CLASS_NAME, "error-message").text
    assert "retryable: false" in box.text
    assert browser.find_elements(By.ID, "result") == []
    # WHEN a write is attempted through the reader  THEN the reader's refusal is shown as such
    run_query(browser, console, "DELETE FROM todos")
    refused = browser.find_element(By.CSS_SELECTOR, ".problem").get_attribute("data-error-type")
    assert refused in {"NotAllowed", "ReadOnly"}


def test_named_queries_are_listed_and_run_from_their_link(
    browser: webdriver.Chrome, console: str
) -> None:
    # GIVEN the query page  WHEN a listed named query's link is followed
    browser.get(f"{console}/query?db=todo")
    listed = [
        row.get_attribute("data-query")
        for row in browser.find_elements(By.CSS_SELECTOR, "#named-queries tbody tr")
    ]
    assert listed == ["open_todos", "todo_by_id", "todo_counts"]
    follow(browser, By.LINK_TEXT, "todo_counts")
    # THEN its answer is shown, the form naming the query it ran
    wait_for_text(browser, "#result", "total")
    assert result_rows(browser) == [["1", "0"]]
    chosen = Select(browser.find_element(By.ID, "field-named")).first_selected_option
    assert chosen.get_attribute("value") == "todo_counts"


def test_a_named_query_takes_its_params_from_the_form(
    browser: webdriver.Chrome, console: str
) -> None:
    # GIVEN the named query todo_by_id  WHEN it runs with its :id from the params field
    browser.get(f"{console}/query?db=todo")
    Select(browser.find_element(By.ID, "field-named")).select_by_value("todo_by_id")
    fill(browser, "params", '{"id": "t1"}')
    follow(browser, By.ID, "run")
    # THEN the one todo is the answer
    wait_for_text(browser, "#result", "t1")
    assert [row[:3] for row in result_rows(browser)] == [["t1", SCRIPT_TITLE, "0"]]


def test_a_rejected_command_shows_its_reason(browser: webdriver.Chrome, console: str) -> None:
    # GIVEN a command the app refuses (no such todo)  WHEN it is sent from the form
    send_named(browser, console, "complete_todo", '{"id": "nope"}')
    # THEN its page settles on rejected, with the app's error type and message
    wait_for_state(browser, "rejected")
    wait_for_text(browser, "#command-state", "NotFound: no open todo 'nope'")


def test_rows_page_by_fifty_until_the_reader_has_no_more(
    browser: webdriver.Chrome, console: str
) -> None:
    # GIVEN 120 more todos, written by one raw SQL command from the form
    browser.get(f"{console}/send")
    fill(browser, "db", "todo")
    browser.find_element(By.ID, "kind-sql").click()
    fill(
        browser,
        "sql",
        "INSERT INTO todos (id, title) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
        "SELECT i + 1 FROM n WHERE i < 120) SELECT printf('p%03d', i), 'page ' || i FROM n",
    )
    follow(browser, By.ID, "send")
    wait_for_state(browser, "applied")
    bookmark = browser.find_element(By.ID, "sequence-number").text
    # WHEN they are queried at the write's position (again, as a user would, while the reader
    # answers a retryable error: a loaded machine can make a snapshot refresh miss its deadline)
    for _ in range(3):
        run_query(
            browser,
            console,
            "SELECT id FROM todos WHERE id LIKE 'p%' ORDER BY id",
            min_position=bookmark,
        )
        if "retryable: true" not in problem_text(browser):
            break
    # THEN pages of 50 follow each other, and the last one offers no next page
    firsts = []
    for page, size in ((1, 50), (2, 50), (3, 20)):
        wait_for_text(browser, "#answer .answer-facts", f"page {page},")
        rows = result_rows(browser)
        assert len(rows) == size, (page, rows, problem_text(browser))
        firsts.append(rows[0][0])
        if page < 3:
            follow(browser, By.ID, "next")
    assert firsts == ["p001", "p051", "p101"]
    assert browser.find_elements(By.ID, "next") == []
    assert browser.find_element(By.ID, "prev").is_displayed()


def test_min_position_ahead_of_the_writer_is_answered_typed(
    browser: webdriver.Chrome, console: str
) -> None:
    # GIVEN a position no command has reached  WHEN the query asks to read at it
    run_query(browser, console, "SELECT 1", min_position="9" * 30)
    # THEN the reader's NotYetAtPosition comes back with the position it has reached
    box = browser.find_element(By.CSS_SELECTOR, ".problem")
    assert box.get_attribute("data-error-type") == "NotYetAtPosition"
    assert "retryable: true" in box.text and "position" in box.text


def test_a_failing_command_is_pending_blocks_its_group_then_lands_in_the_dlq(
    browser: webdriver.Chrome, console: str, stack: Stack, screenshots: Path
) -> None:
    # GIVEN a command that needs schema version 2, which is not deployed
    send_named(
        browser,
        console,
        "set_priority",
        '{"id": "t1", "priority": 3}',
        command_id="prio-t1",
        expect_schema="2",
    )
    # THEN its page shows it pending, with the writer's last error
    wait_for_state(browser, "pending", timeout=30)
    wait_for_text(browser, "#command-state", "SchemaNotReady")
    save_screenshot(browser, screenshots, "command-pending")
    # WHEN another command is sent behind it
    send_named(browser, console, "add_todo", '{"id": "t2", "title": "behind"}', command_id="t2")
    # THEN the commands page shows the group blocked by the failing one
    commands = f"{console}/commands?db=todo"

    def blocked(b: webdriver.Chrome) -> bool:
        b.get(commands)
        return bool(b.find_elements(By.CSS_SELECTOR, ".blocked a[href*='prio-t1']"))

    wait_for(browser, blocked, 30, what="the group to show as blocked by prio-t1")
    assert browser.find_element(By.CSS_SELECTOR, "#failures tr[data-id='prio-t1']")
    save_screenshot(browser, screenshots, "commands")
    # and once its receives are spent it is in the DLQ, and the command behind it applies
    browser.get(f"{console}/command?db=todo&id=prio-t1")
    wait_for_state(browser, "in_dlq", timeout=60)
    browser.get(f"{console}/command?db=todo&id=t2")
    wait_for_state(browser, "applied", timeout=30)


def test_the_queues_page_shows_the_dlq_and_redrive_applies_it_once(
    browser: webdriver.Chrome, console: str, stack: Stack, screenshots: Path
) -> None:
    # GIVEN prio-t1 in the DLQ
    browser.get(f"{console}/queues")
    wait_for_text(browser, "#depth-dlq .visible", "1")
    row = browser.find_element(By.CSS_SELECTOR, "#dlq-messages tbody tr")
    assert '"id":"prio-t1"' in row.text and "SchemaNotReady" in row.text
    save_screenshot(browser, screenshots, "queues")
    # WHEN the migration it needs ships and the operator presses redrive, twice
    shutil.copy(EXAMPLE / "extra" / "0002_add_priority.sql", stack.migrations)
    for _ in range(2):
        browser.get(f"{console}/queues")
        wait_for(
            browser,
            lambda b: b.find_element(By.ID, "redrive").is_enabled(),
            30,
            what="the redrive button",
        )
        follow(browser, By.ID, "redrive")
        wait_for(
            browser,
            lambda b: (
                b.find_element(By.ID, "redrive-section").get_attribute("data-state") == "done"
            ),
            60,
            what="the redrive to finish",
        )
    # THEN the first moved it and the second found nothing left
    wait_for_text(browser, "#redrive-progress", "moved 0 message(s)")
    assert browser.find_element(By.CSS_SELECTOR, "#depth-dlq .visible").text == "0"
    save_screenshot(browser, screenshots, "queues-redriven")
    # and the command applied, once
    browser.get(f"{console}/command?db=todo&id=prio-t1")
    wait_for_state(browser, "applied", timeout=60)
    assert stack.rows(
        "SELECT count(*), (SELECT priority FROM todos WHERE id = 't1') FROM _efsqlite_commands"
        " WHERE id = 'prio-t1'",
        db="todo",
        min_position=_position(browser),
    ) == [[1, 3]]


def _position(browser: webdriver.Chrome) -> str:
    text = browser.find_element(By.ID, "command-state").text
    return text.split("at position ")[1].split()[0]


def test_the_databases_page_lists_tables_counts_and_columns(
    browser: webdriver.Chrome, console: str, screenshots: Path
) -> None:
    # GIVEN the writes above  WHEN the databases page is opened
    browser.get(f"{console}/databases")
    section = browser.find_element(By.CSS_SELECTOR, "section[data-db='todo']")
    facts = section.find_element(By.CSS_SELECTOR, "dl.facts").text
    # THEN it shows the schema version the migration brought, the position and the size
    assert "schema version\n2" in facts and "KiB" in facts
    todos = section.find_element(By.CSS_SELECTOR, "tr[data-table='todos']")
    cells = [td.text for td in todos.find_elements(By.TAG_NAME, "td")]
    assert cells[2] == "122"
    assert cells[3] == "id, title, done, created_at, priority"
    ledger = section.find_element(By.CSS_SELECTOR, "tr[data-table='_efsqlite_commands']")
    assert "efsqlite's own" in ledger.text
    save_screenshot(browser, screenshots, "databases")


def test_commands_are_searchable_by_id(browser: webdriver.Chrome, console: str) -> None:
    # GIVEN the settled commands  WHEN the commands page searches for an id
    browser.get(f"{console}/commands?db=todo")
    fill(browser, "q", "prio-t1")
    follow(browser, By.ID, "search")
    # THEN the ledger's rows holding it are listed, and its status is shown
    ids = [
        row.get_attribute("data-id")
        for row in browser.find_elements(By.CSS_SELECTOR, "#recent tbody tr")
    ]
    assert ids == ["prio-t1"]
    assert "applied" in browser.find_element(By.ID, "found").text


def test_the_console_url_is_printed_at_start(stack: Stack, console: str) -> None:
    # GIVEN the running stack  THEN its log names the console's URL, as a user sees it
    assert f"console: {console}/" in stack.log()
