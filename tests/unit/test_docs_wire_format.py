"""The published wire format must match the code: examples parse, the schema is current."""

from __future__ import annotations

import json
import re
from pathlib import Path

from efsqlite.write.wire import message_json_schema, parse_message

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_json_example_in_the_wire_format_doc_parses() -> None:
    # GIVEN the JSON examples in docs/wire-format.md
    text = (DOCS / "wire-format.md").read_text()
    examples = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(examples) >= 3
    # WHEN each is parsed by the writer's parser
    for example in examples:
        commands = parse_message(example)
        # THEN it is a valid message of at least one command
        assert commands and all(c.v == 1 for c in commands)


def test_published_schema_is_the_generated_one() -> None:
    published = json.loads((DOCS / "wire-format.schema.json").read_text())
    assert published == message_json_schema(), "run: efsqlite schema > docs/wire-format.schema.json"
