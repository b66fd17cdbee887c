"""What one operation does, as measured: the cost model's per-operation figures.

``usage.json`` beside this module is written by ``python bench/update_usage.py`` from a
``make bench`` run (``bench/results/usage.json``, ``cold_import.json``, ``ledger.json``): EFS
operations and metered bytes per commit and per query under the EFS model
(``bench/efs_model.py``), the handlers' milliseconds under that model, the bytes they log per
invocation, the ledger's bytes per command and the handlers' cold imports from the built layer.
Its ``measured_at`` and ``command`` say when and how.

DON'T edit ``usage.json`` by hand: re-run the benchmark and the script, so every figure in
``docs/cost.md`` traces back to a run.
"""

from __future__ import annotations

import json
from importlib import resources
from types import MappingProxyType
from typing import Any


def _load() -> MappingProxyType[str, Any]:
    text = resources.files("efsqlite.client").joinpath("usage.json").read_text("utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("efsqlite/client/usage.json is not a JSON object")
    return MappingProxyType(data)


#: The figures of the last benchmark run written into ``usage.json``.
MEASURED: MappingProxyType[str, Any] = _load()
