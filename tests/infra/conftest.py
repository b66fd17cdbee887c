"""Shared fixtures for the infrastructure tests: the parsed template and temporary copies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.cfn import TEMPLATE, Template, load_template


@pytest.fixture(scope="session")
def template() -> Template:
    return load_template()


@pytest.fixture
def template_copy(tmp_path: Path) -> Callable[[Callable[[str], str]], Path]:
    """Copy the template into a temporary folder, apply a text edit to the copy and return
    the copy's path. The repository's template is never touched."""

    def make(edit: Callable[[str], str]) -> Path:
        folder = tmp_path / "infra"
        folder.mkdir(exist_ok=True)
        copy = folder / "template.yaml"
        original = TEMPLATE.read_text(encoding="utf-8")
        edited = edit(original)
        assert edited != original, "the edit changed nothing"
        copy.write_text(edited, encoding="utf-8")
        return copy

    return make
