"""Preflight: will ``sam deploy`` of ``infra/template.yaml`` succeed on this account?

The first deploy on a new account fails on concurrency: the template reserves executions for
the writer and the reader, and Lambda refuses any reservation that leaves fewer unreserved
executions than its minimum (100, or the whole quota when the quota is smaller), with
"decreases account's UnreservedConcurrentExecution below its minimum value". New accounts
may have a quota of 10, so they cannot reserve a single execution. :func:`check_account`
reads ``GetAccountSettings`` (and, for an update, what the stack's functions reserve already)
and :func:`concurrency_findings` says which parameter to set.

DO decide in :func:`concurrency_findings` (pure, unit-tested) and only read AWS in
:func:`check_account`: the rule is Lambda's, the numbers are the account's.
DON'T count the stack's own reservations against it on an update: they are already out of
``UnreservedConcurrentExecutions`` and come back when the update replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from efsqlite.core.exceptions import EfsqliteError

#: Lambda keeps this many executions unreserved (the whole quota when it is smaller).
MIN_UNRESERVED = 100
#: The template's defaults (tests/infra keeps them equal to infra/template.yaml's).
WRITER_RESERVED = 1
READER_RESERVED = 50
#: EFS allows 512 locks per file across all clients; the template caps readers below it.
READER_CAP = 400


class PreflightError(EfsqliteError):
    """The account's settings could not be read as Lambda documents them."""


@dataclass(frozen=True, slots=True)
class AccountConcurrency:
    """``GetAccountSettings``'s ``AccountLimit``: the quota and what is not reserved yet."""

    limit: int
    unreserved: int

    @property
    def reservable(self) -> int:
        """Executions a new reservation may take."""
        return max(0, self.unreserved - min(MIN_UNRESERVED, self.limit))


@dataclass(frozen=True, slots=True)
class Finding:
    """One preflight check: ``ok``, what was found, and the fix when it is not ok."""

    check: str
    ok: bool
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "message": self.message, "fix": self.fix}


def concurrency_findings(
    account: AccountConcurrency,
    *,
    writer: int = WRITER_RESERVED,
    reader: int = READER_RESERVED,
    reserve: bool = True,
    reserved_by_stack: int = 0,
) -> list[Finding]:
    """What the deploy's concurrency settings meet on ``account``.

    ``writer`` and ``reader`` are WriterReservedConcurrency and ReaderReservedConcurrency,
    ``reserve`` is ReserveConcurrency; ``reserved_by_stack`` is what the deployed stack's
    functions reserve now (0 for a first deploy).
    """
    check = "concurrency"
    quota = f"the account's Lambda concurrency quota is {account.limit}"
    if not reserve:
        if account.limit > READER_CAP:
            return [
                Finding(
                    check,
                    True,
                    f"{quota}, and ReserveConcurrency=false caps nothing: more than "
                    f"{READER_CAP} readers at once would pass EFS's 512 locks per file",
                    "set ReserveConcurrency=true (the default): this account can reserve",
                )
            ]
        return [Finding(check, True, f"{quota}; ReserveConcurrency=false reserves nothing")]
    available = account.reservable + reserved_by_stack
    need = writer + reader
    if need <= available:
        return [
            Finding(check, True, f"{quota}; the stack reserves {need} of {available} reservable")
        ]
    if available > writer:
        fix = (
            f"deploy with --parameter-overrides ReaderReservedConcurrency={available - writer}, "
            "or ReserveConcurrency=false"
        )
    else:
        fix = (
            "deploy with --parameter-overrides ReserveConcurrency=false, or ask for a higher "
            "quota (Service Quotas, AWS Lambda, Concurrent executions) and deploy as is"
        )
    return [
        Finding(
            check,
            False,
            f"{quota} with {account.unreserved} unreserved, of which Lambda keeps "
            f"{min(MIN_UNRESERVED, account.limit)}: the stack would reserve {need} "
            f"(writer {writer}, reader {reader}) and the deploy would fail",
            fix,
        )
    ]


def check_account(
    lambda_client: Any,
    *,
    stack: str | None = None,
    writer: int = WRITER_RESERVED,
    reader: int = READER_RESERVED,
    reserve: bool = True,
) -> list[Finding]:
    """Read the account's Lambda settings (and ``stack``'s reservations) and judge them."""
    try:
        # botocore's parser itself fails (AttributeError, ...) on an answer of the wrong shape
        limit = lambda_client.get_account_settings().get("AccountLimit")
        account = AccountConcurrency(
            limit=int(limit["ConcurrentExecutions"]),
            unreserved=int(limit["UnreservedConcurrentExecutions"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PreflightError(
            f"GetAccountSettings answered without a usable AccountLimit ({exc!r}): is the "
            "endpoint Lambda's?"
        ) from None
    reserved = 0
    if stack:
        for function in (f"{stack}-writer", f"{stack}-reader"):
            reserved += _reserved(lambda_client, function)
    return concurrency_findings(
        account, writer=writer, reader=reader, reserve=reserve, reserved_by_stack=reserved
    )


def _reserved(lambda_client: Any, function: str) -> int:
    try:
        answer = lambda_client.get_function_concurrency(FunctionName=function)
    except lambda_client.exceptions.ResourceNotFoundException:
        return 0
    return int(answer.get("ReservedConcurrentExecutions") or 0)
