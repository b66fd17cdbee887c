"""The local stack (``efsqlite dev``): a local SQS, the writer poller and the reader's HTTP APIs.

Runs the real handlers in ``functions/`` with the same engine the layer ships, on loopback,
with no AWS account and no Docker. Never shipped in the layer; only the CLI imports it.
"""
