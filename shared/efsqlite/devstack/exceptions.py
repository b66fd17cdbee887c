"""Errors of the local stack, on the shared base."""

from __future__ import annotations

from efsqlite.core.exceptions import EfsqliteError


class LocalStackError(EfsqliteError):
    """The local stack cannot start or run (port busy, data folder locked, handler missing)."""
