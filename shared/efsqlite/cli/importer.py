"""``efsqlite import``: load a CSV or JSON lines file into a table through the queue.

(Named ``importer`` because ``import`` is a keyword.) Chunking, the resume file and the
rejected-chunk check are :mod:`efsqlite.client.importer`; this module draws the progress line
on stderr (sending, then with ``--wait`` the writer settling) and prints the summary as JSON
on stdout. The summary counts what this run sent (``resumed_from``: what earlier runs sent).
Ctrl-C ends the progress line, says that running the same command again resumes, and exits
130.
DON'T print anything but the summary on stdout: scripts parse it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from efsqlite.cli.common import (
    EXIT_REJECTED,
    UsageError,
    command_error,
    positive,
    print_json,
    read_client,
    write_client,
)

if TYPE_CHECKING:
    from efsqlite.client.importer import ImportProgress, SettleProgress

#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


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


class _Line:
    """The progress line on stderr: redrawn in place, ended with a newline once."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.open = False
        self.width = 0
        self.drawn_at = 0.0

    def draw(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self.drawn_at < 0.1):
            return
        self.drawn_at = now
        padding = " " * max(0, self.width - len(text))
        sys.stderr.write("\rimport: " + text + padding)
        sys.stderr.flush()
        self.open, self.width = True, len(text)

    def end(self) -> None:
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.open, self.width = False, 0

    def sending(self, progress: ImportProgress) -> None:
        self.draw(progress_bar(progress.rows_sent, progress.total_rows), force=True)

    def settling(self, progress: SettleProgress) -> None:
        text = f"waiting for the writer: {progress.rows_settled}/{progress.rows} rows settled"
        if progress.rejected:
            text += f", {progress.rejected} chunk(s) rejected"
        self.draw(text, force=progress.commands_settled == progress.commands)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from efsqlite.client import encode_command, sql_command
    from efsqlite.client.exceptions import ImportInputError, InvalidCommandError
    from efsqlite.client.importer import IDENTIFIER, Importer

    path = Path(args.file)
    # Checked before any client is built, so a mistake needs no running stack.
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if not IDENTIFIER.fullmatch(args.table):
        raise UsageError(f"table name {args.table!r} is not a plain identifier")
    try:
        encode_command(sql_command(args.db, "SELECT 1"))  # the wire format's rule for --db
    except InvalidCommandError as exc:
        raise command_error(exc, {("db",): ("--db", args.db)}) from None
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
    except ImportInputError as exc:
        raise UsageError(str(exc)) from None
    line = _Line(args.quiet)
    if importer.resumed_from:
        sys.stderr.write(f"import: resuming after {importer.resumed_from} rows\n")
    try:
        try:
            result = importer.run(line.sending)
        except ImportInputError as exc:
            line.end()
            raise UsageError(str(exc)) from None
        line.draw(progress_bar(result.rows, result.total_rows), force=True)
        line.end()
        summary: dict[str, Any] = {
            "rows": result.rows_this_run,
            "commands": result.commands_this_run,
            "resumed_from": result.resumed_from,
            "total_rows": result.total_rows,
            "progress_file": str(result.progress_file),
        }
        if args.wait and result.last is not None:
            try:
                rejected = importer.wait(
                    read_client(args), result, timeout=args.timeout, on_progress=line.settling
                )
            finally:
                line.end()
            summary["rejected"] = len(rejected)
            if rejected:
                print_json(summary)
                sys.stderr.write(
                    f"efsqlite: {len(rejected)} chunk(s) rejected; first: {rejected[0]}\n"
                )
                return EXIT_REJECTED
    except KeyboardInterrupt:
        line.end()
        state = importer.state
        sys.stderr.write(
            f"import: interrupted with {state.rows_sent} rows sent; run the same command again "
            f"to resume (progress is in {importer.progress_file})\n"
        )
        return EXIT_INTERRUPTED
    print_json(summary)
    return 0
