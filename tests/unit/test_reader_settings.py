"""ReaderSettings: the stdlib settings of the reader, read from EFSQLITE_* variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from efsqlite.core.exceptions import InvalidSettingError
from efsqlite.read.settings import ReaderSettings

EXPECTED_VARS = {
    "EFSQLITE_DATA_DIR": "data_dir",
    "EFSQLITE_BUSY_TIMEOUT_MS": "busy_timeout_ms",
    "EFSQLITE_READ_MODE": "read_mode",
    "EFSQLITE_SNAPSHOT_DIR": "snapshot_dir",
    "EFSQLITE_MAX_STALENESS_MS": "max_staleness_ms",
    "EFSQLITE_SNAPSHOT_PATCH": "snapshot_patch",
    "EFSQLITE_QUERIES": "queries",
    "EFSQLITE_ALLOW_RAW_SQL": "allow_raw_sql",
    "EFSQLITE_MAX_ROWS": "max_rows",
    "EFSQLITE_MAX_RESPONSE_BYTES": "max_response_bytes",
    "EFSQLITE_DEFAULT_TIMEOUT_MS": "default_timeout_ms",
    "EFSQLITE_MAX_TIMEOUT_MS": "max_timeout_ms",
    "EFSQLITE_EXTRA_FUNCTIONS": "extra_functions",
    "EFSQLITE_MAX_HEAP_MB": "max_heap_mb",
}


def test_env_var_names_are_the_deployed_contract() -> None:
    # GIVEN the names the SAM template sets  WHEN listing  THEN they match exactly
    assert ReaderSettings.env_vars() == EXPECTED_VARS


def test_defaults() -> None:
    # GIVEN an empty environment  WHEN reading settings  THEN the documented defaults apply
    settings = ReaderSettings.from_env({})
    assert settings.data_dir == Path("/mnt/efsqlite")
    assert settings.busy_timeout_ms == 5000
    assert settings.read_mode == "snapshot"
    assert settings.snapshot_dir == Path("/tmp/efsqlite")
    assert settings.max_staleness_ms == 1000
    assert settings.queries is None
    assert settings.allow_raw_sql is True
    assert settings.max_rows == 1000
    assert settings.max_response_bytes == 5_000_000
    assert settings.default_timeout_ms == 2000
    assert settings.max_timeout_ms == 10_000
    assert settings.extra_functions == ()
    assert settings.max_heap_mb == 256


def test_heap_limit_defaults_to_half_the_lambda_memory() -> None:
    # GIVEN Lambda's memory size variable  WHEN no heap limit is set  THEN half of it
    assert ReaderSettings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}).max_heap_mb == 512
    assert ReaderSettings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}).max_heap_mb == 64
    # AND an explicit EFSQLITE_MAX_HEAP_MB wins; a garbled Lambda value means the default
    both = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "EFSQLITE_MAX_HEAP_MB": "32"}
    assert ReaderSettings.from_env(both).max_heap_mb == 32
    assert ReaderSettings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "x"}).max_heap_mb == 256


def test_every_variable_is_read() -> None:
    # GIVEN every variable set  WHEN reading  THEN each lands in its field, typed
    settings = ReaderSettings.from_env(
        {
            "EFSQLITE_DATA_DIR": "/mnt/data",
            "EFSQLITE_BUSY_TIMEOUT_MS": "10",
            "EFSQLITE_READ_MODE": "direct",
            "EFSQLITE_SNAPSHOT_DIR": "/tmp/x",
            "EFSQLITE_MAX_STALENESS_MS": "0",
            "EFSQLITE_QUERIES": "pkg.mod:queries",
            "EFSQLITE_ALLOW_RAW_SQL": "False",
            "EFSQLITE_MAX_ROWS": "5",
            "EFSQLITE_MAX_RESPONSE_BYTES": "6000000",
            "EFSQLITE_DEFAULT_TIMEOUT_MS": "100",
            "EFSQLITE_MAX_TIMEOUT_MS": "200",
            "EFSQLITE_EXTRA_FUNCTIONS": " my_fn, Other_Fn ,",
            "EFSQLITE_MAX_HEAP_MB": "64",
            "EFSQLITE_SOMETHING_ELSE": "ignored",
        }
    )
    assert settings == ReaderSettings(
        data_dir=Path("/mnt/data"),
        busy_timeout_ms=10,
        read_mode="direct",
        snapshot_dir=Path("/tmp/x"),
        max_staleness_ms=0,
        queries="pkg.mod:queries",
        allow_raw_sql=False,
        max_rows=5,
        max_response_bytes=6_000_000,
        default_timeout_ms=100,
        max_timeout_ms=200,
        extra_functions=("my_fn", "Other_Fn"),
        max_heap_mb=64,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_rows = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EFSQLITE_READ_MODE", "wal"),
        ("EFSQLITE_BUSY_TIMEOUT_MS", "soon"),
        ("EFSQLITE_BUSY_TIMEOUT_MS", "-1"),
        ("EFSQLITE_MAX_ROWS", "0"),
        ("EFSQLITE_MAX_RESPONSE_BYTES", "6000001"),
        ("EFSQLITE_ALLOW_RAW_SQL", "maybe"),
        ("EFSQLITE_QUERIES", "no_colon"),
        ("EFSQLITE_DEFAULT_TIMEOUT_MS", "20000"),
        ("EFSQLITE_MAX_STALENESS_MS", "1.5"),
        ("EFSQLITE_EXTRA_FUNCTIONS", "ok,not-a-name"),
        ("EFSQLITE_EXTRA_FUNCTIONS", "x); DROP TABLE t"),
        ("EFSQLITE_MAX_HEAP_MB", "8"),
        ("EFSQLITE_MAX_HEAP_MB", "20000"),
        ("EFSQLITE_MAX_HEAP_MB", "lots"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    # GIVEN one bad value  WHEN reading  THEN the error names the variable and the value
    with pytest.raises(InvalidSettingError) as caught:
        ReaderSettings.from_env({var: value})
    assert var in str(caught.value)
    assert value in str(caught.value)


def test_reader_import_path_stays_lean() -> None:
    # GIVEN a fresh interpreter  WHEN importing the reader handler  THEN no pydantic/boto3
    import subprocess
    import sys

    code = (
        "import sys; sys.path[:0] = ['functions/reader', 'shared']; "
        "import os; os.environ['EFSQLITE_DATA_DIR'] = '/nonexistent'; import app; "
        "bad = [m for m in ('pydantic', 'boto3', 'botocore', 'aws_lambda_powertools', "
        "'aws_xray_sdk', 'efsqlite.write', 'efsqlite.client', 'efsqlite.cli', 'efsqlite.devstack') "
        "if m in sys.modules]; print(bad)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
