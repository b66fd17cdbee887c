"""``efsqlite import``: load a CSV or JSON lines file into a table through the queue.

(Named ``importer`` because ``import`` is a keyword.) Chunking, the resume file and the
rejected-chunk check are :mod:`efsqlite.client.importer`; this module draws the progress bar
on stderr and prints the summary as JSON on stdout.
DON'T print anything but the summary on stdout: scripts parse it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from efsqlite.cli.common import (
    EXIT_REJECTED,
    UsageError,
    positive,
    print_json,
    read_client,
    write_client,
)

if TYPE_CHECKING:
    from efsqlite.client.importer import ImportProgress


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    load = commands.add_parser("import", parents=[where], help="load CSV / JSON lines")
    load.add_argument("file")
    load.add_argument("--db", required=True)
    load.add_argument("--table", required=True)
    load.add_argument("--format", choices=["csv", "jsonl"], help="default: from the suffix")
    load.add_argument("--rows-per-command", type=positive, default=500)
    load.add_argument(
        "--chunk-bytes", type=positive, default=256 * 1024, help="max bytes of SQL per command"
    )
    load.add_argument("--progress-file", help="default: FILE.import-progress.json")
    load.add_argument("--restart", action="store_true", help="ignore saved progress")
    load.add_argument("--wait", action="store_true", help="wait and report rejected chunks")
    load.add_argument("--timeout", type=float, default=120.0)
    load.add_argument("--quiet", action="store_true")
    load.set_defaults(func=run)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    fraction = done / total if total else 1.0
    filled = int(width * fraction)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} {done}/{total} rows"


def _show(progress: ImportProgress) -> None:
    sys.stderr.write("\rimport: " + progress_bar(progress.rows_sent, progress.total_rows))
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from efsqlite.client.exceptions import ImportInputError
    from efsqlite.client.importer import IDENTIFIER, Importer

    path = Path(args.file)
    # Checked before any client is built, so a mistake needs no running stack.
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if not IDENTIFIER.fullmatch(args.table):
        raise UsageError(f"table name {args.table!r} is not a plain identifier")
    writer = write_client(args)
    try:
        importer = Importer(
            writer,
            path,
            db=args.db,
            table=args.table,
            fmt=args.format,
            rows_per_command=args.rows_per_command,
            chunk_bytes=args.chunk_bytes,
            progress_file=args.progress_file,
            restart=args.restart,
        )
        if importer.resumed_from:
            sys.stderr.write(f"import: resuming after {importer.resumed_from} rows\n")
        result = importer.run(None if args.quiet else _show)
    except ImportInputError as exc:
        raise UsageError(str(exc)) from None
    if not args.quiet:
        sys.stderr.write("\rimport: " + progress_bar(result.rows, result.total_rows) + "\n")
    summary: dict[str, Any] = {
        "rows": result.rows,
        "commands": result.commands,
        "progress_file": str(result.progress_file),
    }
    if args.wait and result.last is not None:
        rejected = importer.wait(read_client(args), result, timeout=args.timeout)
        summary["rejected"] = len(rejected)
        if rejected:
            print_json(summary)
            sys.stderr.write(f"efsqlite: {len(rejected)} chunk(s) rejected; first: {rejected[0]}\n")
            return EXIT_REJECTED
    print_json(summary)
    return 0
