"""The console's pages: data in, :class:`~efsqlite.console.html.Html` out, no I/O.

Each page is a function of what :mod:`efsqlite.console.data` read, so a test renders one from
hand-made values and the server only routes. Every value goes through :func:`tag`, which
escapes it; a page that watches something settle refreshes itself (``<meta refresh>``) and
needs no script: the console sends a Content-Security-Policy that allows none.

DO mark what a test or a user looks for with an ``id`` or a ``data-*`` attribute, not with
text that may be reworded. DON'T add a script: the policy would block it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from efsqlite.client import Bookmark, CommandStatus
from efsqlite.client.explain import describe_failure, receives, when
from efsqlite.client.redrive import MOVE_TASK
from efsqlite.client.status import DatabaseStatus, SqliteVersions
from efsqlite.client.values import blob_bytes, format_blob
from efsqlite.console.data import (
    BODY_EXCERPT_CHARS,
    DatabaseView,
    Problem,
    QueryForm,
    QueryPage,
    QueueView,
    RecentCommand,
    RedriveTask,
    SendForm,
)
from efsqlite.console.html import Html, href, join, tag
from efsqlite.read.queries import NamedQuery
from efsqlite.write.commands import NamedCommandSpec

NAV = (
    ("databases", "/databases", "Databases"),
    ("query", "/query", "Query"),
    ("commands", "/commands", "Commands"),
    ("queues", "/queues", "Queues"),
    ("send", "/send", "Send"),
)
#: Longest cell text a result table shows before cutting it (the whole value is in the title).
MAX_CELL_CHARS = 500


def layout(title: str, active: str, body: Iterable[Html], *, refresh_s: int | None = None) -> Html:
    """A whole page: the navigation, ``body``, and a self-refresh while something settles."""
    head = [
        tag("meta", charset="utf-8"),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        tag("title", f"{title} · efsqlite console"),
        tag("link", rel="stylesheet", href="/style.css"),
    ]
    if refresh_s is not None:
        head.append(tag("meta", http_equiv="refresh", content=str(refresh_s)))
    nav = tag(
        "nav",
        tag("span", "efsqlite", class_="brand"),
        [
            tag("a", label, href=path, class_="active" if key == active else None, id=f"nav-{key}")
            for key, path, label in NAV
        ],
    )
    page = tag(
        "html",
        tag("head", head),
        tag("body", nav, tag("main", tag("h1", title), body), lang="en"),
        lang="en",
    )
    return Html("<!doctype html>\n" + page)


# -- pieces -------------------------------------------------------------------------------------
def problem_box(problem: Problem, *, what: str = "") -> Html:
    """An error as it was answered: type, message, retryable, and any other fields."""
    extra = [
        tag("li", tag("code", key), ": ", json.dumps(value)) for key, value in problem.extra.items()
    ]
    return tag(
        "div",
        tag("strong", problem.error_type, class_="error-type"),
        f" {what}" if what else "",
        tag("p", problem.message, class_="error-message"),
        tag("p", "retryable: ", tag("code", "true" if problem.retryable else "false")),
        tag("ul", extra) if extra else "",
        class_="problem",
        data_error_type=problem.error_type,
    )


def cell(value: Any) -> Html:
    """One SQLite value: NULL marked, blobs as ``x'..'``, long text cut (all of it in the title)."""
    if value is None:
        return tag("td", "NULL", class_="null")
    data = blob_bytes(value)
    if data is not None:
        return tag("td", format_blob(data, 80), class_="blob")
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_CELL_CHARS:
        return tag("td", text[: MAX_CELL_CHARS - 1] + "…", title=text[:10_000])
    return tag("td", text)


def grid(head: Sequence[str], rows: Iterable[Html], **attributes: object) -> Html:
    """A table of headings ``head`` and ready-made rows (``<tr>``)."""
    return tag(
        "table",
        tag("thead", tag("tr", [tag("th", h) for h in head])),
        tag("tbody", rows),
        **attributes,
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], **attributes: object) -> Html:
    """A table of SQLite values (see :func:`cell`)."""
    return grid(columns, [tag("tr", [cell(v) for v in row]) for row in rows], **attributes)


def field(label: str, name: str, value: str, *, lines: int | None = None) -> Html:
    """A labelled text field (a textarea of ``lines`` lines when given), ``id="field-<name>"``."""
    if lines is not None:
        box = tag("textarea", value, name=name, id=f"field-{name}", rows=str(lines))
    else:
        box = tag("input", type="text", name=name, id=f"field-{name}", value=value)
    return tag("label", label, box)


def size(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "?"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{num_bytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{num_bytes} B"


def database_select(names: Sequence[str], chosen: str, *, name: str = "db") -> Html:
    options = [tag("option", db, value=db, selected=db == chosen) for db in names]
    if chosen and chosen not in names:
        options.append(tag("option", chosen, value=chosen, selected=True))
    return tag("select", options, name=name, id=f"field-{name}")


def status_text(status: CommandStatus) -> Html:
    """A command's state and what the ledger says about it."""
    detail: list[Html | str] = [tag("span", status.state, class_=f"state {status.state}")]
    if status.position is not None:
        detail.append(f" at position {status.position}")
    if status.state == "rejected":
        detail.append(tag("p", f"{status.error_type}: {status.error_message}", class_="reason"))
    elif status.failing:
        detail.append(tag("p", describe_failure(status), class_="reason"))
    return join(detail)


def blocked_banner(db: str, blocker: CommandStatus) -> Html:
    return tag(
        "div",
        tag("strong", "BLOCKED"),
        f" database {db} waits on command ",
        command_link(db, blocker.id),
        f": {blocker.state}, {receives(blocker)}. Last error {blocker.error_type}: "
        f"{blocker.error_message}",
        class_="blocked",
        data_db=db,
    )


def command_link(db: str, command_id: str) -> Html:
    """A link to one command's page."""
    return tag("a", command_id, href=href("/command", {"db": db, "id": command_id}))


def command_row(db: str, command_id: str, state: str, *cells: object) -> Html:
    """A table row for one command: its link, its state as a badge, then ``cells``."""
    return tag(
        "tr",
        tag("td", command_link(db, command_id)),
        tag("td", tag("span", state, class_=f"state {state}")),
        [tag("td", c) for c in cells],
        data_id=command_id,
    )


def failures_table(db: str, failures: Sequence[CommandStatus]) -> Html:
    rows = [
        command_row(
            db,
            f.id,
            f.state,
            f.error_type,
            f.error_message,
            receives(f),
            when(f.failing_since_ms),
        )
        for f in failures
    ]
    head = ("id", "state", "last error", "message", "receives", "failing since")
    return grid(head, rows, id="failures")


def _outcomes(status: DatabaseStatus) -> str:
    counts = [f"{status.count(o)} {o}" for o in ("applied", "rejected")]
    return ", ".join([*counts, f"{status.pending} pending", f"{status.in_dlq} in the DLQ"])


# -- pages ----------------------------------------------------------------------------------------
def databases_page(
    views: Sequence[DatabaseView], sqlite: SqliteVersions | None, declared: str
) -> Html:
    body: list[Html] = []
    if sqlite is not None:
        body.append(tag("p", f"SQLite {sqlite.reader or '?'} in the reader, {sqlite.local} here."))
    if not views:
        body.append(
            tag(
                "p",
                f"No database yet. The writer creates a declared one ({declared}) with its "
                "first command: ",
                tag("a", "send one", href="/send"),
                ".",
                id="no-databases",
            )
        )
    for view in views:
        status = view.status
        facts = [
            ("schema version", status.schema_version),
            ("position", status.position),
            ("size", size(view.size_bytes)),
            ("commands", _outcomes(status) if status.ok else None),
        ]
        section: list[Html] = [
            tag("h2", view.name),
            tag(
                "dl",
                [[tag("dt", k), tag("dd", "?" if v is None else v)] for k, v in facts],
                class_="facts",
            ),
            tag(
                "p",
                tag("a", "query", href=href("/query", {"db": view.name})),
                " · ",
                tag("a", "commands", href=href("/commands", {"db": view.name})),
            ),
        ]
        if status.error is not None:
            section.append(problem_box(Problem("StatusUnavailable", status.error)))
        if status.blocked_by is not None:
            section.append(blocked_banner(view.name, status.blocked_by))
        if view.problem is not None:
            section.append(problem_box(view.problem, what="listing tables"))
        rows = []
        for t in view.tables:
            query = href("/query", {"db": view.name, "sql": f"SELECT * FROM {_ident(t.name)}"})
            rows.append(
                tag(
                    "tr",
                    tag("td", tag("a", t.name, href=query)),
                    tag("td", t.kind + (" (efsqlite's own)" if t.internal else "")),
                    tag("td", "?" if t.rows is None else str(t.rows), class_="count"),
                    tag(
                        "td",
                        ", ".join(t.columns) if t.problem is None else problem_box(t.problem),
                    ),
                    data_table=t.name,
                    class_="internal" if t.internal else None,
                )
            )
        if view.tables:
            section.append(grid(("table", "kind", "rows", "columns"), rows, class_="tables"))
        body.append(tag("section", section, class_="database", data_db=view.name))
    return layout("Databases", "databases", body)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def query_page(
    form: QueryForm,
    names: Sequence[str],
    named: Sequence[NamedQuery],
    *,
    answer: QueryPage | None = None,
    problem: Problem | None = None,
) -> Html:
    fields = tag(
        "form",
        tag("label", "database ", database_select(names, form.db)),
        tag(
            "label",
            "named query ",
            tag(
                "select",
                tag("option", "(none: the SQL below)", value=""),
                [tag("option", q.name, value=q.name, selected=q.name == form.named) for q in named],
                name="named",
                id="field-named",
            ),
        ),
        field("SQL", "sql", form.sql, lines=5),
        field("params (JSON array for ?, object for :name)", "params", form.params),
        field(
            "min_position (read your write: a bookmark's sequence number)",
            "min_position",
            form.min_position,
        ),
        tag("button", "Run", type="submit", id="run"),
        method="get",
        action="/query",
        class_="stack",
    )
    body: list[Html] = [fields]
    if problem is not None:
        body.append(problem_box(problem))
    if answer is not None:
        body.append(_result(form, answer))
    if named:
        listed = [
            tag(
                "tr",
                tag(
                    "td",
                    tag("a", q.name, href=href("/query", {"db": form.db, "named": q.name})),
                ),
                tag("td", q.description),
                tag("td", tag("code", q.sql)),
                data_query=q.name,
            )
            for q in named
        ]
        body += [
            tag("h2", "Named queries"),
            grid(("name", "what", "SQL"), listed, id="named-queries"),
        ]
    return layout("Query", "query", body)


def _result(form: QueryForm, answer: QueryPage) -> Html:
    result = answer.result
    notes: list[Html | str] = [
        f"position {result.position}, schema version {result.schema_version}; "
        f"page {answer.page}, {len(answer.rows)} row(s) shown"
    ]
    if result.stale:
        notes.append(
            tag(
                "p",
                "stale: the source could not be read in time, so the reader answered from "
                "its last good snapshot",
                class_="stale",
            )
        )
    if answer.cut_by_bytes:
        notes.append(
            tag(
                "p",
                f"truncated: the reader's answer reached its byte cap after "
                f"{len(result.rows)} row(s); narrow the query to see the rest",
                class_="truncated",
                id="truncated",
            )
        )
    links: list[Html | str] = []
    keep = {
        "db": form.db,
        "sql": form.sql if not form.named else "",
        "named": form.named,
        "params": form.params,
        "min_position": form.min_position,
    }
    if answer.page > 1:
        links.append(
            tag(
                "a",
                "previous page",
                href=href("/query", {**keep, "page": answer.page - 1}),
                id="prev",
            )
        )
    if answer.has_next:
        links.append(
            tag("a", "next page", href=href("/query", {**keep, "page": answer.page + 1}), id="next")
        )
    return tag(
        "section",
        tag("p", notes, class_="answer-facts"),
        table(result.columns, answer.rows, id="result"),
        tag("p", links, class_="paging"),
        id="answer",
    )


def commands_page(
    db: str,
    names: Sequence[str],
    search: str,
    *,
    status: DatabaseStatus | None,
    recent: Sequence[RecentCommand],
    page: int,
    has_next: bool,
    problem: Problem | None = None,
    found: CommandStatus | None = None,
) -> Html:
    body: list[Html] = [
        tag(
            "form",
            tag("label", "database ", database_select(names, db)),
            tag(
                "label",
                "command id ",
                tag("input", type="search", name="q", id="field-q", value=search),
            ),
            tag("button", "Search", type="submit", id="search"),
            method="get",
            action="/commands",
            class_="inline",
        )
    ]
    if found is not None:
        body.append(
            tag(
                "div",
                "Command ",
                command_link(db, found.id),
                ": ",
                status_text(found),
                class_="found",
                id="found",
            )
        )
    if status is not None:
        if status.error is not None:
            body.append(problem_box(Problem("StatusUnavailable", status.error)))
        else:
            body.append(tag("p", _outcomes(status), id="outcomes"))
        if status.blocked_by is not None:
            body.append(blocked_banner(db, status.blocked_by))
        if status.failures:
            body += [
                tag("h2", "Failing commands (being retried, or in the DLQ)"),
                failures_table(db, status.failures),
            ]
    if problem is not None:
        body.append(problem_box(problem))
    if db:
        rows = [
            command_row(
                db,
                c.id,
                c.outcome,
                c.error_type,
                c.error_message,
                c.position,
                when(c.settled_at_ms),
            )
            for c in recent
        ]
        head = ("id", "outcome", "error type", "message", "position", "settled")
        links = []
        if page > 1:
            links.append(
                tag("a", "newer", href=href("/commands", {"db": db, "q": search, "page": page - 1}))
            )
        if has_next:
            links.append(
                tag("a", "older", href=href("/commands", {"db": db, "q": search, "page": page + 1}))
            )
        body += [
            tag(
                "h2",
                "Settled commands, newest first"
                + (f" (ids containing {search!r})" if search else ""),
            ),
            grid(head, rows, id="recent"),
            tag("p", links, class_="paging"),
        ]
    return layout("Commands", "commands", body)


def command_page(
    db: str,
    command_id: str,
    *,
    status: CommandStatus | None,
    problem: Problem | None = None,
    bookmark: Bookmark | None = None,
) -> Html:
    """One command, refreshing itself every second until it is applied or rejected."""
    body: list[Html] = [
        tag("p", "database ", tag("code", db), " · command ", tag("code", command_id))
    ]
    if bookmark is not None:
        body.append(
            tag(
                "p",
                f"Sent: message {bookmark.message_id}, sequence number ",
                tag("code", bookmark.sequence_number, id="sequence-number"),
                " (use it as min_position to read this write)",
                id="sent",
            )
        )
    if status is not None:
        body.append(tag("div", status_text(status), id="command-state", data_state=status.state))
    if problem is not None:
        body.append(problem_box(problem))
    settled = status is not None and status.settled
    if not settled:
        body.append(
            tag(
                "p",
                "Watching: this page refreshes every second until it settles.",
                class_="watching",
            )
        )
    return layout("Command", "commands", body, refresh_s=None if settled else 1)


def queues_page(view: QueueView, task: RedriveTask, *, started: bool | None = None) -> Html:
    body: list[Html] = []
    if view.problem is not None:
        body.append(problem_box(view.problem))
    counts = []
    for name, found in (("queue", view.queue), ("DLQ", view.dlq)):
        counts.append(
            tag(
                "tr",
                tag("td", name),
                tag("td", "?" if found is None else str(found.visible), class_="visible"),
                tag("td", "?" if found is None else str(found.in_flight)),
                tag("td", "?" if found is None else str(found.delayed)),
                id=f"depth-{name.lower()}",
            )
        )
    body.append(grid(("queue", "visible", "in flight", "delayed"), counts, id="depths"))
    for db, status in view.databases.items():
        if status.blocked_by is not None:
            body.append(blocked_banner(db, status.blocked_by))
    body.append(_redrive(task, started))
    body.append(tag("h2", "Messages in the DLQ"))
    if view.messages:
        body.append(
            tag(
                "p",
                'The first messages of the DLQ, as SQS\'s "poll for messages" shows them: '
                "looking counts as a receive, so their receive count grows by one per view.",
                class_="note",
            )
        )
        rows = []
        for message in view.messages:
            ids = message.command_ids()
            last = [view.failures[i] for i in ids if i in view.failures]
            body_text = message.body
            if len(body_text) > BODY_EXCERPT_CHARS:
                body_text = body_text[:BODY_EXCERPT_CHARS] + f"… ({len(message.body)} chars)"
            rows.append(
                tag(
                    "tr",
                    tag("td", tag("code", message.message_id)),
                    tag("td", message.group),
                    tag("td", str(message.receive_count)),
                    tag("td", when(message.sent_ms)),
                    tag("td", tag("code", body_text)),
                    tag(
                        "td",
                        [
                            tag(
                                "p",
                                command_link(message.group or "", f.id),
                                f" {f.error_type}: {f.error_message}",
                            )
                            for f in last
                        ],
                    ),
                    data_message_id=message.message_id,
                )
            )
        head = ("message id", "group", "receives", "sent", "body", "last error (ledger)")
        body.append(grid(head, rows, id="dlq-messages"))
    else:
        body.append(tag("p", "The DLQ has no visible message.", id="dlq-empty"))
    return layout("Queues", "queues", body, refresh_s=2 if task.running else None)


def _redrive(task: RedriveTask, started: bool | None) -> Html:
    parts: list[Html | str] = [
        tag(
            "form",
            tag("button", "Redrive the DLQ", type="submit", id="redrive", disabled=task.running),
            " moves every DLQ message back to the queue, as ",
            tag("code", "efsqlite redrive"),
            " does; the ledger applies each command once, so twice is safe.",
            method="post",
            action="/queues/redrive",
        )
    ]
    if started is False:
        parts.append(tag("p", "A redrive is already running.", class_="note"))
    state = "idle"
    text = ""
    if task.running:
        state = "running"
        progress = task.progress
        if progress is None:
            text = "redrive started"
        elif progress.method == MOVE_TASK:
            text = (
                f"move task {progress.task_handle}: {progress.moved}/{progress.total or '?'} moved"
            )
        else:
            text = f"redrive running ({progress.method}): {progress.moved} moved"
    elif task.problem is not None:
        state = "failed"
        parts.append(problem_box(task.problem, what="redrive"))
    elif task.result is not None:
        result = task.result
        state = "failed" if result.failures else "done"
        text = (
            f"redrive finished ({result.method}): moved {result.moved} message(s); the DLQ "
            f"held {result.dlq_before}, now {result.dlq_after}"
        )
        text += "".join(f"; refused: {f.reason}" for f in result.failures)
    if text:
        parts.append(tag("p", text, id="redrive-progress", data_state=state))
    return tag("section", parts, id="redrive-section", data_state=state)


def send_page(
    form: SendForm,
    names: Sequence[str],
    commands: Sequence[NamedCommandSpec[Any]],
    *,
    problem: Problem | None = None,
) -> Html:
    specs = [
        tag(
            "tr",
            tag("td", tag("code", spec.name)),
            tag("td", tag("code", json.dumps(_args_outline(spec)))),
            data_command=spec.name,
        )
        for spec in commands
    ]
    named = tag(
        "fieldset",
        _kind_legend("named", " a named command", form.kind != "sql"),
        tag(
            "label",
            "command ",
            tag(
                "select",
                [
                    tag("option", s.name, value=s.name, selected=s.name == form.command)
                    for s in commands
                ],
                name="command",
                id="field-command",
            )
            if commands
            else tag("input", type="text", name="command", id="field-command", value=form.command),
        ),
        field("args (JSON object)", "args", form.args, lines=3),
    )
    raw_sql = tag(
        "fieldset",
        _kind_legend("sql", " one SQL statement", form.kind == "sql"),
        field("SQL", "sql", form.sql, lines=3),
        field("params (JSON array or object)", "params", form.params),
    )
    body: list[Html] = []
    if problem is not None:
        body.append(problem_box(problem, what="nothing was sent"))
    body.append(
        tag(
            "form",
            tag(
                "label",
                "database ",
                tag(
                    "input", type="text", name="db", id="field-db", value=form.db, list="databases"
                ),
                tag("datalist", [tag("option", value=n) for n in names], id="databases"),
            ),
            named,
            raw_sql,
            field("id (the idempotency key; empty: a new one)", "id", form.id),
            field("expect_schema (optional)", "expect_schema", form.expect_schema),
            tag("button", "Send", type="submit", id="send"),
            method="post",
            action="/send",
            class_="stack",
        )
    )
    if specs:
        body += [
            tag("h2", "Named commands"),
            grid(("name", "args"), specs, id="named-commands"),
        ]
    return layout("Send", "send", body)


def _kind_legend(kind: str, label: str, checked: bool) -> Html:
    """The radio button choosing what the send form sends (``named`` or ``sql``)."""
    radio = tag("input", type="radio", name="kind", value=kind, id=f"kind-{kind}", checked=checked)
    return tag("legend", radio, label)


def _args_outline(spec: NamedCommandSpec[Any]) -> dict[str, str]:
    """A command's args as ``{"name": "type"}`` from its model's JSON Schema."""
    schema = spec.args_model.model_json_schema()
    required = set(schema.get("required", []))
    outline = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = str(prop.get("type", "any"))
        outline[name] = kind if name in required else f"{kind}, optional"
    return outline


def message_page(title: str, message: str, *, status: int) -> Html:
    """A page for an error of the console itself (not found, refused)."""
    return layout(title, "", [tag("p", message, class_="problem", data_status=str(status))])


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f7f8fa; }
nav { background: #1d3557; padding: 0.6em 1.2em; display: flex; gap: 1.2em; align-items: center; }
nav a { color: #dbe7f5; text-decoration: none; }
nav a.active { color: #fff; font-weight: 600; border-bottom: 2px solid #8ecae6; }
nav .brand { color: #fff; font-weight: 700; margin-right: 1em; }
main { padding: 1em 1.5em 3em; max-width: 1200px; }
h1 { font-size: 1.5em; margin: 0.3em 0 0.6em; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.4em; }
table { border-collapse: collapse; background: #fff; margin: 0.4em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef2f6; }
td.null { color: #8c959f; font-style: italic; }
td.blob { font-family: ui-monospace, monospace; }
tr.internal td { color: #57606a; }
code, textarea, input[type=text], input[type=search] { font-family: ui-monospace, monospace; }
form.stack label { display: block; margin: 0.5em 0; }
form.stack textarea, form.stack input[type=text] { display: block; width: 100%; max-width: 60em; }
form.inline label { margin-right: 1em; }
fieldset { border: 1px solid #d0d7de; margin: 0.6em 0; max-width: 60em; }
button { padding: 0.35em 1.1em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; }
.problem, .blocked { padding: 0.5em 0.9em; margin: 0.6em 0; }
.problem { border-left: 4px solid #cf222e; background: #fff0f0; }
.blocked { border-left: 4px solid #bf8700; background: #fff8e1; }
.found { background: #fff; border: 1px solid #d0d7de; padding: 0.5em 0.9em; }
.state { font-weight: 600; padding: 0 0.35em; border-radius: 3px; }
.state.applied { background: #dafbe1; color: #116329; }
.state.rejected { background: #ffebe9; color: #a40e26; }
.state.pending { background: #fff8c5; color: #7d4e00; }
.state.in_dlq { background: #ffd8b5; color: #8a3a00; }
.state.unknown { background: #eaeef2; color: #57606a; }
.stale, .truncated, .note, .watching { color: #7d4e00; }
"""
