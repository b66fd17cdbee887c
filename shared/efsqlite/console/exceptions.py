"""Errors of the web console, on the shared base."""

from __future__ import annotations

from efsqlite.core.exceptions import EfsqliteError


class ConsoleError(EfsqliteError):
    """The console cannot start: a port taken, a non-loopback address."""
