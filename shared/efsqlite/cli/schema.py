"""``efsqlite schema``: print the wire format's JSON Schema (from the pydantic models).

DON'T write the schema by hand anywhere: ``efsqlite.write.wire`` is its one source.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from efsqlite.write.wire import message_json_schema


def add_parser(commands: Any) -> None:
    schema = commands.add_parser("schema", help="print the wire format's JSON Schema")
    schema.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    json.dump(message_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
