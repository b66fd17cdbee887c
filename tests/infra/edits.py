"""Text edits for temporary copies of the template, the way a person would edit it."""

from __future__ import annotations

import re
from collections.abc import Callable

Edit = Callable[[str], str]


def edit_resource(logical_id: str, edit: Edit) -> Edit:
    """An edit confined to one top-level resource's block of the template text."""

    def apply(text: str) -> str:
        block = re.search(rf"(?ms)^  {logical_id}:\n.*?(?=^  \S|^\S|\Z)", text)
        assert block is not None, f"{logical_id} not found in the template"
        edited = edit(block.group(0))
        assert edited != block.group(0), f"the edit changed nothing in {logical_id}"
        return text[: block.start()] + edited + text[block.end() :]

    return apply


def drop_line(pattern: str) -> Edit:
    """Remove the first line matching ``pattern`` (leading spaces aside)."""

    def apply(block: str) -> str:
        return re.sub(rf"(?m)^\s*{pattern}\n", "", block, count=1)

    return apply


def drop_key(key: str) -> Edit:
    """Remove a property and the more indented lines of its value (``key: !If`` + a list)."""

    def apply(block: str) -> str:
        return re.sub(rf"(?m)^( *){key}:.*\n(?:\1 .*\n)*", "", block, count=1)

    return apply


#: The break the issue names first: the writer loses its reserved concurrency.
drop_writer_reserved_concurrency = edit_resource(
    "WriterFunction", drop_key("ReservedConcurrentExecutions")
)
