"""The ``efsqlite`` command line (placeholder until the CLI issue fills it in)."""

from __future__ import annotations

import argparse
import json
import sys

from efsqlite.models import message_json_schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="efsqlite", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("schema", help="print the wire format's JSON Schema")
    args = parser.parse_args(argv)
    if args.command == "schema":
        json.dump(message_json_schema(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0
