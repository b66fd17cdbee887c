"""Names and ids (database names, registered names, command ids), defined once for the
writer, the reader and the client, and kept free of pydantic for the reader's cold start."""

from __future__ import annotations

import re
from typing import TypeGuard

from efsqlite.core.exceptions import InvalidDatabaseNameError

DB_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
#: A registered name: a named command (writer) or a named query (reader).
REGISTERED_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
#: A command id (the idempotency key) is 1 to this many characters.
MAX_COMMAND_ID_CHARS = 128
_DB_NAME_RE = re.compile(DB_NAME_PATTERN)


def check_db_name(db: object) -> str:
    """Return ``db`` if it is a valid database name, else raise ``InvalidDatabaseNameError``."""
    if not isinstance(db, str) or not _DB_NAME_RE.fullmatch(db):
        raise InvalidDatabaseNameError(
            f"invalid database name {db!r}: it must match {DB_NAME_PATTERN.strip('^$')}"
        )
    return db


def is_command_id(value: object) -> TypeGuard[str]:
    """True if ``value`` has a command id's type and length (1 to 128 characters).

    Whether it is valid Unicode (no lone surrogate) is :func:`efsqlite.core.sqlpolicy.is_text`'s
    question, asked where the id would be stored.
    """
    return isinstance(value, str) and 0 < len(value) <= MAX_COMMAND_ID_CHARS
