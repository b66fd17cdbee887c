"""What CloudFormation would deploy: SAM's own translator (offline) run on the template.

SAM publishes a new version (and moves the ``live`` alias, which the Function URL and
provisioned concurrency use) only when the version's logical id changes, and by default it
hashes only the function's code, environment and memory into that id. All of the reader's
logic is in the layer, so a layer-only update must change the id too
(``AutoPublishAliasAllProperties``), or the alias keeps serving the old layer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.infra import cfn
from tests.infra.cfn import REPO, TEMPLATE
from tests.infra.edits import drop_line, edit_resource
from tests.infra.tools import locate, missing, tool_env

SCRIPT = Path(__file__).with_name("translate.py")
#: The one parameter without a default, and the S3 objects `sam package` would upload.
PARAMS = {"Databases": "app"}
ARTEFACTS = {
    "SharedLayer": "s3://artefacts/layer-1111.zip",
    cfn.WRITER: "s3://artefacts/writer-2222.zip",
    cfn.READER: "s3://artefacts/reader-3333.zip",
}


def translate(template: Path, artefacts: dict[str, str] | None = None) -> dict[str, Any]:
    python, why = locate("sam", "python")
    if python is None:
        missing(f"SAM's translator: {why}")
    done = subprocess.run(
        [
            str(python),
            str(SCRIPT),
            str(template),
            json.dumps(PARAMS),
            json.dumps(artefacts or ARTEFACTS),
        ],
        cwd=REPO,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    translated: dict[str, Any] = json.loads(done.stdout)
    return translated


def versions(translated: dict[str, Any], function: str) -> list[str]:
    """Logical ids of the versions SAM publishes for ``function`` (its alias points at one)."""
    return sorted(
        name
        for name, resource in translated["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Version"
        and resource["Properties"]["FunctionName"] == {"Ref": function}
    )


def layer_only_update() -> dict[str, str]:
    return {**ARTEFACTS, "SharedLayer": "s3://artefacts/layer-9999.zip"}


def test_a_layer_only_update_publishes_a_new_reader_version() -> None:
    # GIVEN the template translated as deployed, then after a change to the layer alone
    before = translate(TEMPLATE)
    after = translate(TEMPLATE, layer_only_update())
    # THEN the reader's version (so its live alias and Function URL) moves to the new layer
    [old] = versions(before, cfn.READER)
    [new] = versions(after, cfn.READER)
    assert old != new
    assert after["Resources"][new]["Properties"]["FunctionName"] == {"Ref": cfn.READER}
    # AND the alias points at the new version
    alias = after["Resources"][f"{cfn.READER}Aliaslive"]["Properties"]
    assert alias["FunctionVersion"] == {"Fn::GetAtt": [new, "Version"]}


def test_an_unchanged_deploy_keeps_the_reader_version() -> None:
    # GIVEN the same artefacts translated twice (a redeploy of the same build)
    # THEN the version is the same: no new version, no cold starts, no provisioned churn
    assert versions(translate(TEMPLATE), cfn.READER) == versions(translate(TEMPLATE), cfn.READER)


@pytest.mark.parametrize(
    ("resource", "line"),
    [
        (cfn.READER, r"AutoPublishAliasAllProperties: .*"),
        ("SharedLayer", r"PublishLambdaVersion: .*"),
    ],
)
def test_without_either_setting_the_layer_update_is_missed(
    template_copy: Callable[[Callable[[str], str]], Path], resource: str, line: str
) -> None:
    # GIVEN the template without one of the two settings (SAM's defaults)
    copy = template_copy(edit_resource(resource, drop_line(line)))
    # WHEN only the layer changes
    # THEN the version is the same one: the alias would keep serving the old layer
    assert versions(translate(copy), cfn.READER) == versions(
        translate(copy, layer_only_update()), cfn.READER
    )
