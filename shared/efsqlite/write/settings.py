"""Settings, read once per execution environment from ``EFSQLITE_*`` environment variables.

Each field's environment variable is ``EFSQLITE_`` + the field name in upper case. A bad value
raises :class:`~efsqlite.core.exceptions.InvalidSettingError` naming the variable, at cold start,
rather than a confusing failure on the first message.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from efsqlite.core.connections import HEAP_MB_BOUNDS, default_heap_mb
from efsqlite.core.exceptions import InvalidSettingError
from efsqlite.core.settings import env_values, env_var
from efsqlite.core.sqlpolicy import FUNCTION_NAME_PATTERN
from efsqlite.core.types import JournalMode
from efsqlite.write.apply import DEFAULT_STEP_BUDGET

#: Four SQS messages' worth: a value a command builds may exceed its own message, a little.
DEFAULT_MAX_VALUE_BYTES = 4 * 1_048_576

#: ``databases``: comma-separated database names, each with ``*`` and ``?`` wildcards allowed.
_DATABASES_PATTERN = r"^[a-z0-9_*?-]{1,64}(,[a-z0-9_*?-]{1,64})*$"

#: Databases the writer keeps open at once; the least recently used is closed past this.
DEFAULT_MAX_OPEN_DATABASES = 64
#: Half of Lambda's 1,024 file descriptors: each open database holds one (the one committing,
#: its journal too), and the runtime, the logs and SQLite's temporary files need the rest.
MAX_OPEN_DATABASES_LIMIT = 512

#: Where the SAM template mounts the EFS access point. Lambda requires ``/mnt/<name>``.
DEFAULT_DATA_DIR = Path("/mnt/efsqlite")
#: Above SQS's 14-day maximum retention twice over (source queue, then DLQ), so a redriven
#: copy of an applied command still finds its ledger row.
DEFAULT_LEDGER_RETENTION_DAYS = 35


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Folder holding <db>.sqlite files (the EFS mount)."
    )
    busy_timeout_ms: int = Field(
        5000, ge=0, le=600_000, description="How long a connection waits on a lock."
    )

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Map each environment variable this model reads to its field name."""
        return {env_var(name): name for name in cls.model_fields}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build the settings from the environment; unknown ``EFSQLITE_*`` names are ignored."""
        values = env_values(cls.model_fields, environ)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "?"
                shown = values.get(field, "")
                problems.append(f"{env_var(field)}={shown!r}: {error['msg']}")
            raise InvalidSettingError("invalid setting " + "; ".join(problems)) from None


class WriterSettings(_Settings):
    """What the writer Lambda (and the local stack's writer) reads."""

    journal_mode: JournalMode = Field(
        "DELETE",
        description="Rollback journal mode; chosen by measured syscalls, see docs/architecture.md.",
    )
    ledger_retention_days: int = Field(
        DEFAULT_LEDGER_RETENTION_DAYS,
        ge=15,
        le=3650,
        description="How long command outcomes are kept. Must outlive SQS retention (14 days).",
    )
    migrations_dir: Path | None = Field(
        None, description="Folder of NNNN_name.sql migrations applied on cold start."
    )
    commands: str | None = Field(
        None, description="Named-command registry as 'package.module:attribute'."
    )
    allow_raw_statements: bool = Field(
        True, description="Accept commands carrying raw SQL 'statements'."
    )
    command_step_budget: int = Field(
        DEFAULT_STEP_BUDGET,
        ge=10_000,
        le=100_000_000_000,
        description=(
            "SQLite VM steps one command may take (about 1 s per 100 M here); more rejects it "
            "with ResourceLimit, the same answer on every retry."
        ),
    )
    max_value_bytes: int = Field(
        DEFAULT_MAX_VALUE_BYTES,
        ge=1024,
        le=1_000_000_000,
        description="Largest string or blob a command may build or store (SQLITE_LIMIT_LENGTH).",
    )
    max_heap_mb: int | None = Field(
        None,
        ge=HEAP_MB_BOUNDS[0],
        le=HEAP_MB_BOUNDS[1],
        description=(
            "SQLite's heap limit in MiB; unset means half the function's memory "
            "(AWS_LAMBDA_FUNCTION_MEMORY_SIZE), or 256 outside Lambda."
        ),
    )
    databases: str | None = Field(
        None,
        pattern=_DATABASES_PATTERN,
        description=(
            "Databases the writer may create: comma-separated names or patterns ('tenant-*'), "
            "or '*' for any. Unset creates none. Existing databases are always written."
        ),
    )
    max_receive_count: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "The queue's maxReceiveCount, so the ledger can tell a command being retried from "
            "one SQS moved to the DLQ (status shows receives left)."
        ),
    )
    max_open_databases: int = Field(
        DEFAULT_MAX_OPEN_DATABASES,
        ge=1,
        le=MAX_OPEN_DATABASES_LIMIT,
        description=(
            "Databases kept open at once (one file descriptor each, of Lambda's 1,024); past "
            "it the least recently used is closed, and reopened on its next batch."
        ),
    )
    extra_functions: str = Field(
        "",
        pattern=f"^({FUNCTION_NAME_PATTERN}(,{FUNCTION_NAME_PATTERN})*)?$",
        description="Comma-separated SQL functions the deployer registers, allowed in commands.",
    )

    def may_create(self, db: str) -> bool:
        """Whether ``databases`` declares ``db`` (a name, a pattern it matches, or ``*``)."""
        if not self.databases:
            return False
        return any(fnmatch.fnmatchcase(db, entry) for entry in self.databases.split(","))

    def extra_function_names(self) -> list[str]:
        return [name for name in self.extra_functions.split(",") if name]

    def heap_limit_bytes(self, environ: Mapping[str, str] | None = None) -> int:
        """The heap limit to set: the setting, else half the function's memory, else 256 MiB."""
        if self.max_heap_mb is not None:
            return self.max_heap_mb << 20
        return default_heap_mb(os.environ if environ is None else environ) << 20
