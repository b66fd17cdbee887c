"""Run SAM's translator (aws-sam-translator, offline) on a template; print the result as JSON.

    .tools/sam/bin/python tests/infra/translate.py TEMPLATE PARAMS_JSON URIS_JSON

Runs in the ``.tools/sam`` virtualenv (aws-sam-cli brings the translator), never in the
project's: it imports only the translator and the standard library. ``URIS_JSON`` maps a
resource's logical id to the S3 URI ``sam package`` would have uploaded its code to (the
translator accepts only S3 locations for ``CodeUri`` and ``ContentUri``); a changed URI is
what a changed artefact looks like to CloudFormation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    """The template names managed policies by ARN, so SAM never needs to look one up."""

    def load(self) -> dict[str, str]:
        return {}


def main(template: str, params: str, uris: str) -> None:
    document: dict[str, Any] = yaml_parse(Path(template).read_text(encoding="utf-8"))
    for logical_id, uri in json.loads(uris).items():
        properties = document["Resources"][logical_id]["Properties"]
        key = "ContentUri" if "ContentUri" in properties else "CodeUri"
        properties[key] = uri
    translated = transform(document, json.loads(params), _NoManagedPolicies())  # type: ignore[arg-type]
    json.dump(translated, sys.stdout, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:4])
