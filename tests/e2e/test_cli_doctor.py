"""``efsqlite doctor --aws`` as a process, through boto3, against an HTTP endpoint that
answers Lambda's GetAccountSettings and GetFunctionConcurrency as AWS documents them
(``AWS_ENDPOINT_URL_LAMBDA`` points boto3 at it, as it would at any Lambda-compatible API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .conftest import run_cli


class FakeAccount:
    """What the endpoint answers: the account's quota and each function's reservation."""

    def __init__(self) -> None:
        self.limit = 10
        self.unreserved = 10
        self.reserved: dict[str, int] = {}
        self.broken: dict[str, Any] = {}
        self.paths: list[str] = []


@pytest.fixture
def lambda_api() -> Iterator[tuple[str, FakeAccount]]:
    account = FakeAccount()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            account.paths.append(self.path)
            if self.path.rstrip("/") == "/2016-08-19/account-settings" and account.broken:
                self._answer(200, account.broken)
                return
            if self.path.rstrip("/") == "/2016-08-19/account-settings":
                self._answer(
                    200,
                    {
                        "AccountLimit": {
                            "ConcurrentExecutions": account.limit,
                            "UnreservedConcurrentExecutions": account.unreserved,
                            "CodeSizeUnzipped": 262144000,
                            "CodeSizeZipped": 52428800,
                            "TotalCodeSize": 80530636800,
                        },
                        "AccountUsage": {"FunctionCount": 0, "TotalCodeSize": 0},
                    },
                )
                return
            name = self.path.split("/functions/")[-1].split("/")[0]
            if self.path.endswith("/concurrency") and name in account.reserved:
                self._answer(200, {"ReservedConcurrentExecutions": account.reserved[name]})
                return
            self._answer(
                404,
                {"Type": "User", "Message": f"Function not found: {name}"},
                error="ResourceNotFoundException",
            )

        def _answer(self, status: int, body: dict[str, Any], error: str = "") -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if error:
                self.send_header("X-Amzn-ErrorType", error)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", account
    finally:
        server.shutdown()
        server.server_close()


def doctor(endpoint: str, *args: str) -> Any:
    return run_cli(
        "doctor",
        "--aws",
        "--region",
        "us-east-1",
        *args,
        extra_env={
            "AWS_ENDPOINT_URL_LAMBDA": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
        },
    )


def test_a_ten_execution_account_is_told_the_one_parameter_before_deploying(
    lambda_api: tuple[str, FakeAccount],
) -> None:
    # GIVEN a new account whose concurrency quota is 10
    endpoint, account = lambda_api
    # WHEN the operator runs the preflight
    result = doctor(endpoint)
    # THEN it fails, names the parameter, and read the account's settings to say so
    assert result.returncode == 1, result.stderr
    assert "FAIL   concurrency" in result.stdout and "quota is 10" in result.stdout
    assert "ReserveConcurrency=false" in result.stdout
    assert any(p.startswith("/2016-08-19/account-settings") for p in account.paths)
    # AND with that parameter the same account passes
    assert doctor(endpoint, "--no-reserve").returncode == 0


def test_an_update_of_a_deployed_stack_counts_its_reservations(
    lambda_api: tuple[str, FakeAccount],
) -> None:
    # GIVEN an account of 151 whose deployed stack reserves the template's 1 + 50
    endpoint, account = lambda_api
    account.limit, account.unreserved = 151, 100
    account.reserved = {"app-writer": 1, "app-reader": 50}
    # WHEN the preflight runs for a first deploy, then for an update of the stack
    first = doctor(endpoint, "--json")
    update = doctor(endpoint, "--stack", "app", "--json")
    # THEN the first would fail and the update passes: its reservations come back to it
    assert first.returncode == 1 and json.loads(first.stdout)["ok"] is False
    assert update.returncode == 0, update.stdout + update.stderr
    report = json.loads(update.stdout)
    assert report["ok"] is True
    assert [c["check"] for c in report["checks"]] == ["python", "sqlite", "concurrency"]
    assert any(p.endswith("/functions/app-reader/concurrency") for p in account.paths)


def test_an_unreachable_endpoint_is_one_line_not_a_traceback() -> None:
    result = doctor("http://127.0.0.1:9")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.startswith("efsqlite: error:")


@pytest.mark.parametrize(
    "answer",
    [
        {"AccountUsage": {"FunctionCount": 0}},
        {"AccountLimit": {"ConcurrentExecutions": 10}},
        {"AccountLimit": "ten"},
    ],
)
def test_an_answer_without_a_usable_limit_is_one_line(
    lambda_api: tuple[str, FakeAccount], answer: dict[str, Any]
) -> None:
    # GIVEN an endpoint whose GetAccountSettings lacks the numbers Lambda documents
    endpoint, account = lambda_api
    account.broken = answer
    # THEN the preflight says so in one line and exits 1, no traceback
    result = doctor(endpoint)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("efsqlite: error: GetAccountSettings answered without")
