from __future__ import annotations

from pathlib import Path

import pytest
from efsqlite.core.connections import database_path
from efsqlite.core.exceptions import EfsqliteError, InvalidDatabaseNameError, InvalidSettingError
from efsqlite.write.settings import DEFAULT_DATA_DIR, WriterSettings


def test_defaults_match_the_lambda_mount() -> None:
    settings = WriterSettings.from_env({})
    assert settings.data_dir == DEFAULT_DATA_DIR
    assert settings.journal_mode == "DELETE"
    assert settings.ledger_retention_days > 14


def test_values_come_from_efsqlite_variables() -> None:
    settings = WriterSettings.from_env(
        {"EFSQLITE_DATA_DIR": "/mnt/x", "EFSQLITE_BUSY_TIMEOUT_MS": "250", "OTHER": "1"}
    )
    assert (settings.data_dir, settings.busy_timeout_ms) == (Path("/mnt/x"), 250)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EFSQLITE_BUSY_TIMEOUT_MS", "soon"),
        ("EFSQLITE_JOURNAL_MODE", "WAL"),
        ("EFSQLITE_LEDGER_RETENTION_DAYS", "7"),
        ("EFSQLITE_ALLOW_RAW_STATEMENTS", "maybe"),
        ("EFSQLITE_COMMAND_STEP_BUDGET", "0"),
        ("EFSQLITE_COMMAND_STEP_BUDGET", "9" * 40),
        ("EFSQLITE_COMMAND_STEP_BUDGET", "1e9"),
        ("EFSQLITE_MAX_VALUE_BYTES", "-1"),
        ("EFSQLITE_MAX_VALUE_BYTES", "\ud800"),
        ("EFSQLITE_MAX_HEAP_MB", "1"),
        ("EFSQLITE_MAX_HEAP_MB", "99999999"),
        ("EFSQLITE_EXTRA_FUNCTIONS", "a;DROP TABLE x"),
        ("EFSQLITE_EXTRA_FUNCTIONS", "a,,b"),
        ("EFSQLITE_EXTRA_FUNCTIONS", "x" * 65),
        ("EFSQLITE_EXTRA_FUNCTIONS", "caf\u00e9"),
    ],
)
def test_bad_setting_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(InvalidSettingError, match=var) as caught:
        WriterSettings.from_env({var: value})
    assert isinstance(caught.value, EfsqliteError)


@pytest.mark.parametrize("name", ["Main", "", "a" * 65, "../x", "a/b", "a.b", "é"])
def test_bad_database_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidDatabaseNameError):
        database_path(Path("/data"), name)


def test_good_database_name_maps_to_a_file() -> None:
    assert database_path(Path("/data"), "orders_2-eu") == Path("/data/orders_2-eu.sqlite")


def test_limits_settings_read_and_default() -> None:
    settings = WriterSettings.from_env(
        {"EFSQLITE_EXTRA_FUNCTIONS": "slugify,haversine", "EFSQLITE_MAX_HEAP_MB": "64"}
    )
    assert settings.extra_function_names() == ["slugify", "haversine"]
    assert settings.heap_limit_bytes() == 64 << 20
    unset = WriterSettings.from_env({})
    assert unset.heap_limit_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}) == 512 << 20
    assert unset.heap_limit_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "x"}) == 256 << 20
    assert unset.extra_function_names() == []


@pytest.mark.parametrize("blank", ["", "  ", "\t\n"])
def test_a_blank_value_means_the_default_on_both_sides(blank: str) -> None:
    from efsqlite.read.settings import ReaderSettings

    environ = {"EFSQLITE_BUSY_TIMEOUT_MS": blank, "EFSQLITE_DATA_DIR": blank}
    writer, reader = WriterSettings.from_env(environ), ReaderSettings.from_env(environ)
    assert (writer.busy_timeout_ms, writer.data_dir) == (5000, DEFAULT_DATA_DIR)
    assert (reader.busy_timeout_ms, reader.data_dir) == (5000, DEFAULT_DATA_DIR)


def test_values_are_stripped_alike_on_both_sides() -> None:
    from efsqlite.read.settings import ReaderSettings

    environ = {"EFSQLITE_BUSY_TIMEOUT_MS": " 250\n", "EFSQLITE_DATA_DIR": " /mnt/x "}
    writer, reader = WriterSettings.from_env(environ), ReaderSettings.from_env(environ)
    assert (writer.busy_timeout_ms, writer.data_dir) == (250, Path("/mnt/x"))
    assert (reader.busy_timeout_ms, reader.data_dir) == (250, Path("/mnt/x"))
