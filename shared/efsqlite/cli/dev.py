"""``efsqlite dev``: run the whole stack locally until Ctrl-C (see :mod:`efsqlite.devstack`).

DO take each option from the command line first, then its ``EFSQLITE_*`` variable.
DO warn (one line each, on stderr) when no command or query registry is given: named ones
are then refused, which is easy to miss.
DON'T import the devstack at module level: only ``dev`` needs it (and its HTTP servers).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from efsqlite.cli.common import UsageError, port, positive


def add_parser(commands: Any) -> None:
    from efsqlite.devstack.stack import (
        DEFAULT_CONSOLE_PORT,
        DEFAULT_LAMBDA_PORT,
        DEFAULT_SQS_PORT,
        DEFAULT_URL_PORT,
    )

    dev = commands.add_parser("dev", help="run the local stack until Ctrl-C")
    dev.add_argument("--data-dir", help="state folder (default ./.efsqlite)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--sqs-port", type=port, default=DEFAULT_SQS_PORT)
    dev.add_argument("--lambda-port", type=port, default=DEFAULT_LAMBDA_PORT)
    dev.add_argument("--url-port", type=port, default=DEFAULT_URL_PORT)
    dev.add_argument(
        "--console-port",
        type=port,
        default=DEFAULT_CONSOLE_PORT,
        help="the web console's port on 127.0.0.1 (docs/console.md)",
    )
    dev.add_argument("--no-console", action="store_true", help="do not serve the web console")
    dev.add_argument("--visibility-timeout", type=positive, default=30)
    dev.add_argument("--max-receive-count", type=positive, default=5)
    dev.add_argument(
        "--databases",
        help="databases the writer may create: names or patterns, comma-separated, or '*' "
        "(default: $EFSQLITE_DATABASES, else '*')",
    )
    dev.add_argument("--migrations-dir", help="default: $EFSQLITE_MIGRATIONS_DIR")
    dev.add_argument("--commands", help="module:attr of a CommandRegistry")
    dev.add_argument("--queries", help="module:attr of a QueryRegistry")
    dev.add_argument("--read-mode", choices=["snapshot", "direct"], default="snapshot")
    dev.add_argument("--app-root", help="folder holding functions/ (default: the checkout)")
    dev.add_argument("--journal-fsync", action="store_true", help="fsync each queued message")
    dev.add_argument("--verbose", action="store_true")
    dev.set_defaults(func=run)


def _databases(value: str) -> str:
    """``--databases`` checked as the writer will check it, so a typo fails here, not later."""
    from efsqlite.core.exceptions import InvalidSettingError
    from efsqlite.write.settings import WriterSettings

    try:
        WriterSettings.from_env({"EFSQLITE_DATABASES": value})
    except InvalidSettingError:
        raise UsageError(
            f"--databases {value!r}: comma-separated database names or patterns "
            "(a-z, 0-9, '_', '-', with '*' and '?'), or '*' for any"
        ) from None
    return value.strip()


def run(args: argparse.Namespace) -> int:
    from efsqlite.devstack.stack import DevOptions, run_dev

    def env_path(name: str) -> Path | None:
        value = os.environ.get(name)
        return Path(value) if value else None

    migrations = (
        Path(args.migrations_dir) if args.migrations_dir else env_path("EFSQLITE_MIGRATIONS_DIR")
    )
    if migrations is not None and not migrations.is_dir():
        raise UsageError(f"migrations folder {migrations} does not exist")
    options = DevOptions(
        data_dir=Path(args.data_dir or ".efsqlite"),
        host=args.host,
        sqs_port=args.sqs_port,
        lambda_port=args.lambda_port,
        url_port=args.url_port,
        visibility_timeout=args.visibility_timeout,
        max_receive_count=args.max_receive_count,
        databases=_databases(args.databases or os.environ.get("EFSQLITE_DATABASES") or "*"),
        migrations_dir=migrations,
        commands=args.commands or os.environ.get("EFSQLITE_COMMANDS") or None,
        queries=args.queries or os.environ.get("EFSQLITE_QUERIES") or None,
        read_mode=args.read_mode,
        app_root=Path(args.app_root) if args.app_root else None,
        journal_fsync=args.journal_fsync,
        verbose=args.verbose,
    )
    for warning in registry_warnings(options.commands, options.queries, os.environ):
        sys.stderr.write(f"efsqlite dev: warning: {warning}\n")
    addons = []
    if not args.no_console:
        from efsqlite.console import console_addon

        addons.append(console_addon("127.0.0.1", args.console_port))
    run_dev(options, addons)
    return 0


def _turned_off(value: str | None) -> bool:
    return (value or "").strip().lower() in {"0", "false", "f", "n", "no", "off"}


def registry_warnings(
    commands: str | None, queries: str | None, environ: Mapping[str, str]
) -> list[str]:
    """One line per registry not given: what the stack then accepts and refuses."""
    warnings = []
    if not commands:
        if _turned_off(environ.get("EFSQLITE_ALLOW_RAW_STATEMENTS")):
            accepted = "and raw SQL is off (EFSQLITE_ALLOW_RAW_STATEMENTS): no command can apply"
        else:
            accepted = "only raw-SQL commands (send --sql) apply"
        warnings.append(
            "no command registry (--commands or EFSQLITE_COMMANDS): every named command is "
            f"rejected UnknownCommand, {accepted}"
        )
    if not queries:
        if _turned_off(environ.get("EFSQLITE_ALLOW_RAW_SQL")):
            answered = "and raw SQL is off (EFSQLITE_ALLOW_RAW_SQL): no query can run"
        else:
            answered = "only raw-SQL queries run"
        warnings.append(
            "no query registry (--queries or EFSQLITE_QUERIES): every named query is refused "
            f"InvalidRequest, {answered}"
        )
    return warnings
