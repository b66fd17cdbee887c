"""One vocabulary of error types: the code's ErrorType, the reader's errors and docs/errors.md."""

from __future__ import annotations

import re
from pathlib import Path

from efsqlite.core.exceptions import ErrorType
from efsqlite.read import exceptions as read_exceptions
from efsqlite.write.exceptions import CommandRejectedError

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(r"^\| `(\w+)` \| ([a-z, ]+) \| .+ \|$", re.M)


def documented() -> dict[str, set[str]]:
    return {m.group(1): set(m.group(2).split(", ")) for m in ROW.finditer(DOC.read_text())}


def test_the_table_lists_exactly_the_code_vocabulary() -> None:
    # GIVEN the vocabulary in code  WHEN compared with docs/errors.md  THEN the same names
    assert sorted(documented()) == sorted(t.value for t in ErrorType)


def test_every_reader_error_speaks_the_vocabulary_and_is_documented_as_reader() -> None:
    # GIVEN every typed error the reader answers with
    classes = [
        c
        for c in vars(read_exceptions).values()
        if isinstance(c, type) and issubclass(c, read_exceptions.ReadError)
    ]
    assert len(classes) >= 12
    table = documented()
    for cls in classes:
        # THEN its type is a member of ErrorType, documented as a reader error
        assert cls.error_type in set(ErrorType), cls
        assert "reader" in table[cls.error_type], cls


def test_writer_types_are_pascal_case_members() -> None:
    # GIVEN the default type of a handler's rejection  THEN it is the documented one
    assert CommandRejectedError("no").error_type == ErrorType.COMMAND_REJECTED
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+", t.value) for t in ErrorType)
