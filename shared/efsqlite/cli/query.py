"""``efsqlite query``: read-only SQL or a named query through the reader, as a table or JSON.

DO print the reader's own JSON answer for ``--json`` (scripts parse it). DON'T hide a
truncated or stale answer in the table form: the footer says so.
"""

from __future__ import annotations

import argparse
from typing import Any

from efsqlite.cli.common import UsageError, format_table, json_params, positive, print_json
from efsqlite.cli.common import read_client as make_read_client


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    query = commands.add_parser("query", parents=[where], help="run a read-only query")
    query.add_argument("sql", nargs="?", help="SQL (or use --named)")
    query.add_argument("--db", required=True)
    query.add_argument("--params", help="JSON array or object")
    query.add_argument("--named", help="run a named query instead of SQL")
    query.add_argument("--min-position", help="wait until the writer reached this position")
    query.add_argument("--max-rows", type=positive)
    query.add_argument("--timeout-ms", type=positive)
    query.add_argument("--json", action="store_true", help="print the reader's JSON answer")
    query.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = make_read_client(args)
    params = json_params(args.params)
    if not args.named and not args.sql:
        raise UsageError("give the SQL to run, or --named NAME")
    run_query = client.named_query if args.named else client.query
    result = run_query(
        args.named or args.sql,
        params,
        db=args.db,
        min_position=args.min_position,
        max_rows=args.max_rows,
        timeout_ms=args.timeout_ms,
    )
    if args.json:
        print_json(result.to_json())
        return 0
    print(format_table(result.columns, result.rows))
    notes = [f"{len(result.rows)} row(s)", f"position {result.position}"]
    if result.schema_version is not None:
        notes.append(f"schema v{result.schema_version}")
    if result.truncated:
        notes.append("TRUNCATED (raise --max-rows)")
    if result.stale:
        notes.append("STALE (the reader served its last good snapshot)")
    print("(" + ", ".join(notes) + ")")
    return 0
