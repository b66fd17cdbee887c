"""``efsqlite status``: queue and DLQ counts, each database's position, schema, outcomes and
failing commands (a blocked group named, with its head command's last error and receives left),
the SQLite releases; or, with ``--command ID``, one command's state and why.

The facts come from :mod:`efsqlite.client.status`; this module only prints them.
DON'T change the shape of ``--json``: scripts and the e2e suite read it
(``StatusReport.as_dict()`` is that shape).
"""

from __future__ import annotations

import argparse
from typing import Any

from efsqlite.cli.common import (
    EXIT_REJECTED,
    UsageError,
    endpoints,
    format_table,
    print_json,
    read_client,
    session,
)
from efsqlite.client.explain import blocked_line, describe_failure


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    status = commands.add_parser("status", parents=[where], help="queues and databases")
    status.add_argument("--db", action="append", help="database to report (repeatable)")
    status.add_argument(
        "--command", dest="command_id", help="report one command's outcome (with one --db)"
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run)


def _command_status(args: argparse.Namespace) -> int:
    if not args.db or len(args.db) != 1:
        raise UsageError("--command needs exactly one --db")
    db = args.db[0]
    reader = read_client(args)
    status = reader.command_status(args.command_id, db=db)
    if args.json:
        print_json({"db": db, **status.to_json()})
        return EXIT_REJECTED if status.state == "rejected" else 0
    if status.failing:
        state = "in the DLQ" if status.state == "in_dlq" else "pending, being retried"
        print(f"{status.id} on {db}: {state} ({describe_failure(status)})")
    elif status.state == "unknown":
        why = reader.why_not_settled(db, status)
        print(
            f"{status.id} on {db}: unknown (not seen by the writer yet{'; ' + why if why else ''})"
        )
    else:
        line = f"{status.id} on {db}: {status.state}"
        if status.position:
            line += f" at position {status.position}"
        if status.error_type:
            line += f" ({status.error_type}: {status.error_message})"
        print(line)
    return EXIT_REJECTED if status.state == "rejected" else 0


def run(args: argparse.Namespace) -> int:
    if args.command_id:
        return _command_status(args)
    from efsqlite.client.status import collect_status

    report = collect_status(endpoints(args), databases=args.db, session=session(args))
    if args.json:
        print_json(report.as_dict())
        return 0
    print(
        f"sqlite {report.sqlite.reader or '?'} (reader and writer: one layer), "
        f"{report.sqlite.local} (this CLI)"
    )
    for label, counts in (("queue", report.queue), ("dlq", report.dlq)):
        if counts is None:
            print(f"{label:<6} (unknown: pass --{'dlq-url' if label == 'dlq' else 'queue-url'})")
        else:
            print(
                f"{label:<6} {counts.visible} queued, {counts.in_flight} in flight, "
                f"{counts.delayed} delayed"
            )
    rows: list[list[Any]] = []
    blocked: list[str] = []
    for db, info in report.databases.items():
        if info.error is not None:
            rows.append([db, "?", "?", "?", "?", "?", "?", info.error])
            continue
        note = ""
        if info.blocked_by is not None:
            note = f"BLOCKED by {info.blocked_by.id}"
            blocked.append(blocked_line(db, info.blocked_by))
        elif info.in_dlq:
            note = "commands in the DLQ: efsqlite redrive"
        rows.append(
            [
                db,
                info.position,
                info.schema_version,
                info.count("applied"),
                info.count("rejected"),
                info.pending,
                info.in_dlq,
                note,
            ]
        )
    if rows:
        columns = [
            "database",
            "position",
            "schema",
            "applied",
            "rejected",
            "pending",
            "in_dlq",
            "note",
        ]
        print(format_table(columns, rows))
        for line in blocked:
            print(line)
    else:
        print("no databases yet (pass --db NAME to ask about one)")
    return 0
