"""The functions' environment in the template matches what the code reads.

Every ``EFSQLITE_*`` variable a settings model reads must be set in the template (and no other),
the template's defaults must validate, and every value a parameter allows must validate too:
a deploy that succeeds must never fail at cold start on a setting.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pytest
from efsqlite.write.settings import WriterSettings

from tests.infra import cfn
from tests.infra.cfn import Template

#: A value for each free-form string parameter, in the shape a deployer would give it.
EXAMPLES = {
    "MigrationsDir": "/opt/migrations",
    "CommandsRegistry": "my_app.commands:registry",
    "ReaderQueries": "my_app.queries:registry",
    "SqliteHeapMb": "256",
    "ExtraFunctions": "slugify,haversine",
    "Databases": "app,tenant-*",
}


class SettingsModel(Protocol):
    @classmethod
    def env_vars(cls) -> dict[str, str]: ...

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Any: ...


def reader_settings() -> type[SettingsModel]:
    module = importlib.import_module("efsqlite.read.settings")
    settings: type[SettingsModel] = module.ReaderSettings
    return settings


MODELS: dict[str, Callable[[], type[SettingsModel]]] = {
    cfn.WRITER: lambda: WriterSettings,
    cfn.READER: reader_settings,
}


def candidate_values(param: dict[str, Any], name: str) -> list[str]:
    """Every value worth trying for a parameter: its bounds, its choices, its default."""
    values = [param["Default"]] if "Default" in param else []
    values += list(param.get("AllowedValues") or [])
    values += [param[k] for k in ("MinValue", "MaxValue") if k in param]
    if name in EXAMPLES:
        values.append(EXAMPLES[name])
    pattern = param.get("AllowedPattern")
    out = []
    for value in values:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if pattern:
            assert re.fullmatch(pattern, text), f"{name}: {text!r} fails its own AllowedPattern"
        out.append(text)
    return sorted(set(out))


@pytest.mark.parametrize("function", [cfn.WRITER, cfn.READER])
def test_template_sets_exactly_the_variables_the_code_reads(
    template: Template, function: str
) -> None:
    # GIVEN the settings model the function's code reads
    model = MODELS[function]()
    # WHEN the function's EFSQLITE_* variables are compared with the model's
    in_template = {k for k in cfn.environment(template, function) if k.startswith("EFSQLITE_")}
    # THEN they are the same set
    assert in_template == set(model.env_vars())


@pytest.mark.parametrize("function", [cfn.WRITER, cfn.READER])
def test_template_defaults_validate_and_data_dir_is_the_mount(
    template: Template, function: str
) -> None:
    # GIVEN the settings model and the template's environment at the parameters' defaults
    model = MODELS[function]()
    env = cfn.resolved_environment(template, function)
    # WHEN the function would start with it
    settings = model.from_env(env)
    # THEN it validates, and the data folder is the EFS mount path
    assert [str(settings.data_dir)] == cfn.mount_paths(template, function)
    assert cfn.MOUNT_PATH_RE.fullmatch(str(settings.data_dir))


@pytest.mark.parametrize("function", [cfn.WRITER, cfn.READER])
def test_every_value_a_parameter_allows_validates(template: Template, function: str) -> None:
    # GIVEN the settings model and the parameters behind the function's variables
    model = MODELS[function]()
    base = cfn.resolved_environment(template, function)
    tried = 0
    for var, value in cfn.environment(template, function).items():
        param = cfn.parameter(template, value)
        if param is None or not var.startswith("EFSQLITE_"):
            continue
        # WHEN each bound, choice and example of the parameter is set alone
        for candidate in candidate_values(param, value["Ref"]):
            # THEN the function would start with it
            model.from_env({**base, var: candidate})
            tried += 1
    assert tried >= 5


def test_empty_string_parameters_mean_none_for_the_writer(template: Template) -> None:
    # GIVEN the writer's optional parameters left at their empty defaults
    env = cfn.resolved_environment(template, cfn.WRITER)
    assert env["EFSQLITE_MIGRATIONS_DIR"] == "" and env["EFSQLITE_COMMANDS"] == ""
    # WHEN the writer reads them
    settings = WriterSettings.from_env(env)
    # THEN empty means none, not a folder called ""
    assert settings.migrations_dir is None
    assert settings.commands is None
