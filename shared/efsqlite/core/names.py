"""Database names, kept free of pydantic so the reader's cold start stays lean."""

from __future__ import annotations

import re

from efsqlite.core.exceptions import InvalidDatabaseNameError

DB_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
_DB_NAME_RE = re.compile(DB_NAME_PATTERN)


def check_db_name(db: object) -> str:
    """Return ``db`` if it is a valid database name, else raise ``InvalidDatabaseNameError``."""
    if not isinstance(db, str) or not _DB_NAME_RE.fullmatch(db):
        raise InvalidDatabaseNameError(
            f"invalid database name {db!r}: it must match [a-z0-9_-]{{1,64}}"
        )
    return db
