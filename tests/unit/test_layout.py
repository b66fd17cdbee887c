"""The package layout: which third-party packages each part may import, as allow-lists.

The layering between the parts (cli over the console, over devstack and client, over write and
read, over core) is an import-linter contract in ``pyproject.toml``, which the last test runs.
This file adds what
import-linter's contracts can only say as deny-lists: the third-party packages each part may
import at all, function-level and ``TYPE_CHECKING`` imports included (grimp reads them all).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "shared" / "efsqlite"

#: Every third-party package a part may import. The engine's parts stay on the stdlib and the
#: pinned SQLite; the write path adds pydantic; the client and the local stack boto3.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"apsw"}),
    "read": frozenset({"apsw"}),
    "write": frozenset({"apsw", "pydantic", "pydantic_core"}),
    "client": frozenset({"pydantic", "boto3", "botocore"}),
    "cli": frozenset({"boto3", "botocore"}),
    "console": frozenset(),
    "devstack": frozenset({"boto3", "botocore"}),
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("efsqlite", include_external_packages=True, cache_dir=None)


def third_party(graph: grimp.ImportGraph, part: str) -> dict[str, set[str]]:
    """The non-stdlib, non-efsqlite packages each module of ``efsqlite.<part>`` imports."""
    found: dict[str, set[str]] = {}
    for module in sorted(graph.find_descendants(f"efsqlite.{part}") | {f"efsqlite.{part}"}):
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            if top != "efsqlite" and top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(module)
    return found


def test_every_module_belongs_to_a_part() -> None:
    # GIVEN the package  WHEN listing its top level  THEN only the parts and the entry points
    top = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert top == {*ALLOWED, "__init__.py", "__main__.py", "py.typed"}


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_its_allowed_third_party_packages(
    graph: grimp.ImportGraph, part: str
) -> None:
    # GIVEN the import graph of efsqlite (every import statement, at any depth)
    # WHEN collecting the third-party packages one part imports
    found = third_party(graph, part)
    # THEN each is on the part's allow-list
    extra = {name: sorted(modules) for name, modules in found.items() if name not in ALLOWED[part]}
    assert extra == {}


def test_the_import_contracts_hold() -> None:
    # GIVEN the import-linter contracts in pyproject.toml  WHEN lint-imports checks them
    # THEN every contract is kept (make lint runs the same; this keeps the failure in pytest)
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout
