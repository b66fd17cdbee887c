from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.sample_app import write_migrations

REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def load_handler_module(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` afresh: a new module object is a new cold start."""
    path = REPO / "functions" / name / "app.py"
    module_name = f"_efsqlite_test_{name}_app_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    return write_migrations(tmp_path / "migrations")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "efs"
    folder.mkdir()
    return folder


@pytest.fixture
def writer_env(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, migrations_dir: Path
) -> dict[str, str]:
    env = {
        "EFSQLITE_DATA_DIR": str(data_dir),
        "EFSQLITE_DATABASES": "*",
        "EFSQLITE_MIGRATIONS_DIR": str(migrations_dir),
        "EFSQLITE_COMMANDS": "tests.support.sample_app:registry",
        "EFSQLITE_BUSY_TIMEOUT_MS": "200",
        "POWERTOOLS_METRICS_NAMESPACE": "efsqlite-tests",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def cold_start_writer(writer_env: dict[str, str]) -> Callable[[], ModuleType]:
    """Import the writer handler as Lambda would on a cold start (may be called again)."""
    return lambda: load_handler_module("writer")
