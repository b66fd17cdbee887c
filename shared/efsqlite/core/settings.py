"""Settings from the environment: ``EFSQLITE_`` + the field name in upper case.

Both settings classes read the environment through here: the writer's
(:class:`efsqlite.write.settings.WriterSettings`, pydantic) and the reader's
(:class:`efsqlite.read.settings.ReaderSettings`, a stdlib dataclass, for the cold start). So
the naming rule, what counts as unset and how a bad value is reported are the same on both.

DO treat a blank value as unset: a template that passes "" for an omitted parameter then means
the default, on both sides alike.
DON'T log or echo more of a bad value than the error message holds: settings can hold paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from efsqlite.core.exceptions import InvalidSettingError

ENV_PREFIX = "EFSQLITE_"


def env_var(field: str) -> str:
    """The environment variable of settings field ``field``."""
    return ENV_PREFIX + field.upper()


def env_values(fields: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The set values of ``fields`` (stripped; blank means unset), keyed by field name."""
    source = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field in fields:
        raw = source.get(env_var(field))
        if raw is not None and raw.strip():
            values[field] = raw.strip()
    return values


def invalid_setting(field: str, value: object, why: str) -> InvalidSettingError:
    """The error for a bad value of ``field``, naming its environment variable."""
    return InvalidSettingError(f"invalid setting {env_var(field)}={value!r}: {why}")
