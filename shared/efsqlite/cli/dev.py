"""``efsqlite dev``: run the whole stack locally until Ctrl-C (see :mod:`efsqlite.devstack`).

DO take each option from the command line first, then its ``EFSQLITE_*`` variable.
DON'T import the devstack at module level: only ``dev`` needs it (and its HTTP servers).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from efsqlite.cli.common import UsageError, port, positive


def add_parser(commands: Any) -> None:
    from efsqlite.devstack.stack import DEFAULT_LAMBDA_PORT, DEFAULT_SQS_PORT, DEFAULT_URL_PORT

    dev = commands.add_parser("dev", help="run the local stack until Ctrl-C")
    dev.add_argument("--data-dir", help="state folder (default ./.efsqlite)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--sqs-port", type=port, default=DEFAULT_SQS_PORT)
    dev.add_argument("--lambda-port", type=port, default=DEFAULT_LAMBDA_PORT)
    dev.add_argument("--url-port", type=port, default=DEFAULT_URL_PORT)
    dev.add_argument("--visibility-timeout", type=positive, default=30)
    dev.add_argument("--max-receive-count", type=positive, default=5)
    dev.add_argument("--migrations-dir", help="default: $EFSQLITE_MIGRATIONS_DIR")
    dev.add_argument("--commands", help="module:attr of a CommandRegistry")
    dev.add_argument("--queries", help="module:attr of a QueryRegistry")
    dev.add_argument("--read-mode", choices=["snapshot", "direct"], default="snapshot")
    dev.add_argument("--app-root", help="folder holding functions/ (default: the checkout)")
    dev.add_argument("--journal-fsync", action="store_true", help="fsync each queued message")
    dev.add_argument("--verbose", action="store_true")
    dev.set_defaults(func=run)


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
        migrations_dir=migrations,
        commands=args.commands or os.environ.get("EFSQLITE_COMMANDS") or None,
        queries=args.queries or os.environ.get("EFSQLITE_QUERIES") or None,
        read_mode=args.read_mode,
        app_root=Path(args.app_root) if args.app_root else None,
        journal_fsync=args.journal_fsync,
        verbose=args.verbose,
    )
    run_dev(options)
    return 0
