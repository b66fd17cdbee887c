"""Every error efsqlite raises on purpose derives from :class:`EfsqliteError`.

Callers catch the base to tell our typed, explained failures from bugs. The errors here are
the ones every part can raise; each part keeps its own in its ``exceptions`` module
(``efsqlite.write.exceptions``, ``efsqlite.read.exceptions``, ``efsqlite.client.exceptions``,
``efsqlite.devstack.exceptions``), all derived from this base.
"""

from __future__ import annotations


class EfsqliteError(Exception):
    """Base of every error efsqlite raises on purpose."""


class InvalidSettingError(EfsqliteError):
    """An environment variable holds a value the settings model refuses.

    The message names the variable, so a bad deployment is fixed from one log line.
    """


class InvalidDatabaseNameError(EfsqliteError, ValueError):
    """A database name does not match ``[a-z0-9_-]{1,64}``."""


class DatabaseOpenError(EfsqliteError):
    """A database opened, but not the way the design needs (the journal mode did not stick)."""


class RegistryError(EfsqliteError):
    """A command or query registry cannot be loaded or is misused."""
