"""``efsqlite doctor``: check this machine, and with ``--aws`` the AWS account, before a deploy.

Without ``--aws``: the Python version and the SQLite build the engine pins. With ``--aws``:
the account's Lambda concurrency against what the template reserves
(:mod:`efsqlite.client.preflight`), so a small-quota account learns which parameter to set
before ``sam deploy`` rolls back. Each check prints one line (``ok``, ``advice`` or
``FAIL`` and the fix); exit 1 when any check fails.
DON'T decide anything here: the rules are in the client library.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from efsqlite.cli.common import positive, print_json, session


def add_parser(commands: Any, where: argparse.ArgumentParser) -> None:
    doctor = commands.add_parser(
        "doctor", parents=[where], help="check this machine (and --aws, the account)"
    )
    doctor.add_argument(
        "--aws", action="store_true", help="also read the account's Lambda settings"
    )
    doctor.add_argument("--stack", help="the deployed stack's name, for an update")
    doctor.add_argument(
        "--writer-concurrency", type=positive, help="WriterReservedConcurrency (default 1)"
    )
    doctor.add_argument(
        "--reader-concurrency", type=positive, help="ReaderReservedConcurrency (default 50)"
    )
    doctor.add_argument(
        "--no-reserve", action="store_true", help="check ReserveConcurrency=false instead"
    )
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=run)


def _local() -> list[Any]:
    from efsqlite.client.preflight import Finding
    from efsqlite.core import engine

    found = []
    version = sys.version_info
    found.append(
        Finding(
            "python",
            version >= (3, 11),
            f"Python {version.major}.{version.minor} (Lambda runs 3.13; 3.11 and later run here)",
            "" if version >= (3, 11) else "use Python 3.11 or later",
        )
    )
    info = engine.engine_info()
    pinned = info["sqlite"] == engine.PINNED_VERSION
    found.append(
        Finding(
            "sqlite",
            pinned,
            f"SQLite {info['sqlite']} through apsw {info['apsw']}"
            f" (the layer ships {engine.PINNED_VERSION})",
            "" if pinned else "reinstall: pip install -e '.[dev]' installs the pinned apsw",
        )
    )
    return found


def run(args: argparse.Namespace) -> int:
    from efsqlite.client import preflight

    findings = _local()
    if args.aws:
        boto = session(args)
        if boto is None:
            import boto3

            boto = boto3.Session()
        lambda_client = boto.client("lambda", region_name=args.region)
        findings += preflight.check_account(
            lambda_client,
            stack=args.stack,
            writer=args.writer_concurrency or preflight.WRITER_RESERVED,
            reader=args.reader_concurrency or preflight.READER_RESERVED,
            reserve=not args.no_reserve,
        )
    if args.json:
        print_json({"ok": all(f.ok for f in findings), "checks": [f.to_json() for f in findings]})
    else:
        for finding in findings:
            label = "FAIL" if not finding.ok else ("advice" if finding.fix else "ok")
            line = f"{label:6} {finding.check}: {finding.message}"
            if finding.fix:
                line += f"\n       fix: {finding.fix}"
            print(line)
    return 0 if all(f.ok for f in findings) else 1
