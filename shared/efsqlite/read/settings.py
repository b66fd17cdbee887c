"""The reader's settings, read once per execution environment from ``EFSQLITE_*`` variables.

A stdlib dataclass, not pydantic: the reader's cold start is the product's latency. Each
field's variable is ``EFSQLITE_`` + the field name in upper case
(:mod:`efsqlite.core.settings`); a bad value raises
:class:`~efsqlite.core.exceptions.InvalidSettingError` naming it, at cold start.

DON'T let a setting put the snapshot folder at, inside or above the data folder: the
snapshot clean-up deletes every file there that it did not make.
DO keep ``max_response_bytes`` within :data:`LAMBDA_RESPONSE_LIMIT`: a larger cap would
build answers Lambda refuses to return (the cap counts the answer's envelope too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from efsqlite.core.connections import DEFAULT_HEAP_MB, HEAP_MB_BOUNDS, default_heap_mb
from efsqlite.core.exceptions import InvalidSettingError
from efsqlite.core.settings import env_values, env_var, invalid_setting
from efsqlite.core.sqlpolicy import FUNCTION_NAME_PATTERN, function_allow_list
from efsqlite.core.types import ReadMode
from efsqlite.read.connection import QueryLimits

#: Lambda's synchronous response limit (6 MB); the byte cap must stay below it.
LAMBDA_RESPONSE_LIMIT = 6_000_000
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_FUNCTION_NAME_RE = re.compile(f"^{FUNCTION_NAME_PATTERN}$")


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    """What the reader Lambda reads, from ``EFSQLITE_`` + the field name in upper case.

    A stdlib dataclass, not pydantic: the reader's cold start is the product's latency.
    Bad values raise :class:`InvalidSettingError` naming the variable, at cold start.
    """

    data_dir: Path = Path("/mnt/efsqlite")
    busy_timeout_ms: int = 5000
    read_mode: ReadMode = "snapshot"
    snapshot_dir: Path = Path("/tmp/efsqlite")
    max_staleness_ms: int = 1000
    #: Refresh a snapshot by copying only the pages the page log says changed (keeps the
    #: previous copy in ``snapshot_dir`` too: twice the database's size); off copies all.
    snapshot_patch: bool = True
    queries: str | None = None
    allow_raw_sql: bool = True
    max_rows: int = 1000
    max_response_bytes: int = 5_000_000
    default_timeout_ms: int = 2000
    max_timeout_ms: int = 10_000
    #: Functions callers may use beyond SQLite's built-ins (``EFSQLITE_EXTRA_FUNCTIONS``,
    #: comma-separated), for example ones an app registers.
    extra_functions: tuple[str, ...] = ()
    #: SQLite's process-wide hard heap limit (MB); from the environment, half the Lambda's
    #: memory when ``EFSQLITE_MAX_HEAP_MB`` is unset.
    max_heap_mb: int = DEFAULT_HEAP_MB

    #: Inclusive bounds of the integer settings.
    BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {
        "busy_timeout_ms": (0, 600_000),
        "max_staleness_ms": (0, 3_600_000),
        "max_rows": (1, 1_000_000),
        "max_response_bytes": (1_000, LAMBDA_RESPONSE_LIMIT),
        "default_timeout_ms": (1, 900_000),
        "max_timeout_ms": (1, 900_000),
        "max_heap_mb": HEAP_MB_BOUNDS,
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                self._refuse(name, value, f"must be an integer from {low} to {high}")
        if self.read_mode not in ("snapshot", "direct"):
            self._refuse("read_mode", self.read_mode, "must be 'snapshot' or 'direct'")
        if self.default_timeout_ms > self.max_timeout_ms:
            self._refuse(
                "default_timeout_ms",
                self.default_timeout_ms,
                f"must not exceed EFSQLITE_MAX_TIMEOUT_MS ({self.max_timeout_ms})",
            )
        for name in ("data_dir", "snapshot_dir"):
            if not isinstance(getattr(self, name), Path) or not str(getattr(self, name)):
                self._refuse(name, getattr(self, name), "must be a folder path")
        self._check_folders_apart()
        if self.queries is not None and ":" not in self.queries:
            self._refuse("queries", self.queries, "must be 'package.module:attribute'")
        if not isinstance(self.allow_raw_sql, bool):
            self._refuse("allow_raw_sql", self.allow_raw_sql, "must be true or false")
        if not isinstance(self.extra_functions, tuple) or not all(
            isinstance(name, str) and _FUNCTION_NAME_RE.fullmatch(name)
            for name in self.extra_functions
        ):
            self._refuse(
                "extra_functions",
                ",".join(map(str, self.extra_functions)),
                "must be comma-separated SQL function names",
            )

    def _check_folders_apart(self) -> None:
        """The snapshot clean-up deletes what it did not make: keep it off the data."""
        try:
            data, snap = self.data_dir.resolve(), self.snapshot_dir.resolve()
        except (OSError, RuntimeError) as exc:
            raise InvalidSettingError(
                f"invalid settings {env_var('snapshot_dir')}={str(self.snapshot_dir)!r} "
                f"and {env_var('data_dir')}={str(self.data_dir)!r}: cannot resolve: {exc}"
            ) from None
        if snap == data or data in snap.parents or snap in data.parents:
            raise InvalidSettingError(
                f"invalid settings {env_var('snapshot_dir')}={str(self.snapshot_dir)!r} "
                f"and {env_var('data_dir')}={str(self.data_dir)!r}: the snapshot folder "
                f"({snap}) must be neither the data folder ({data}), nor inside it, nor above "
                "it: its clean-up deletes every file there that it did not make"
            )

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Map each environment variable this class reads to its field name."""
        return {env_var(f.name): f.name for f in fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build the settings from the environment; blank values mean the default."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, raw in env_values((f.name for f in fields(cls)), source).items():
            if name in cls.BOUNDS:
                try:
                    values[name] = int(raw)
                except ValueError:
                    cls._refuse(name, raw, "must be an integer")
            elif name in ("allow_raw_sql", "snapshot_patch"):
                if raw.lower() not in _TRUE | _FALSE:
                    cls._refuse(name, raw, "must be true or false")
                values[name] = raw.lower() in _TRUE
            elif name in ("data_dir", "snapshot_dir"):
                values[name] = Path(raw)
            elif name == "extra_functions":
                values[name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            else:
                values[name] = raw
        if "max_heap_mb" not in values:
            values["max_heap_mb"] = default_heap_mb(source)
        return cls(**values)

    @classmethod
    def _refuse(cls, name: str, value: object, why: str) -> None:
        raise invalid_setting(name, value, why)

    def query_limits(self) -> QueryLimits:
        return QueryLimits(
            max_length=self.max_response_bytes,
            functions=function_allow_list(self.extra_functions),
        )
