"""The local stack as a subprocess, reached only over HTTP (boto3) and through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "todo"
COMMANDS = "examples.todo.commands:registry"
QUERIES = "examples.todo.queries:queries"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``e2e`` (a conftest's ``pytestmark`` would not)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_client(service: str, endpoint: str, config: Config | None = None) -> Any:
    """A stock boto3 client for one of the local stack's endpoints (any credentials do)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
        config=config,
    )


class Stack:
    """One ``efsqlite dev`` process on free ports, with its own data and migrations folders."""

    def __init__(
        self,
        root: Path,
        *,
        visibility_timeout: int = 30,
        max_receive_count: int = 5,
        databases: str | None = None,
    ) -> None:
        self.data_dir = root / "data"
        self.migrations = root / "migrations"
        if not self.migrations.exists():
            shutil.copytree(EXAMPLE / "migrations", self.migrations)
        self.ports = (free_port(), free_port(), free_port())
        self.console_port = free_port()
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.databases = databases
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "stack.log"
        self.endpoints: dict[str, Any] = {}

    def command(self) -> list[str]:
        sqs, lam, url = self.ports
        return [
            sys.executable,
            "-m",
            "efsqlite",
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--sqs-port",
            str(sqs),
            "--lambda-port",
            str(lam),
            "--url-port",
            str(url),
            "--console-port",
            str(self.console_port),
            "--visibility-timeout",
            str(self.visibility_timeout),
            "--max-receive-count",
            str(self.max_receive_count),
            "--migrations-dir",
            str(self.migrations),
            "--commands",
            COMMANDS,
            "--queries",
            QUERIES,
            *(["--databases", self.databases] if self.databases else []),
        ]

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        endpoints_file = self.data_dir / "endpoints.json"
        endpoints_file.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stack exited early:\n{self.log()}")
            if endpoints_file.exists():
                self.endpoints = json.loads(endpoints_file.read_text())
                return self.endpoints
            time.sleep(0.1)
        raise RuntimeError(f"stack did not start in {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- clients, over HTTP only --------------------------------------------------------------
    def sqs(self) -> Any:
        return local_client("sqs", self.endpoints["sqs_endpoint"])

    def lambda_client(self) -> Any:
        return local_client(
            "lambda",
            self.endpoints["lambda_endpoint"],
            Config(retries={"max_attempts": 1}, read_timeout=60),
        )

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A stock boto3 ``lambda.invoke`` of the reader."""
        response = self.lambda_client().invoke(
            FunctionName=self.endpoints["reader_function"], Payload=json.dumps(payload)
        )
        assert "FunctionError" not in response, response["Payload"].read()
        answer: dict[str, Any] = json.loads(response["Payload"].read())
        return answer

    def rows(
        self,
        sql: str,
        params: list[Any] | None = None,
        db: str = "main",
        min_position: object = None,
    ) -> list[Any]:
        """Rows through the reader. Snapshot mode: pass ``min_position`` to read a write."""
        payload: dict[str, Any] = {"db": db, "sql": sql, "params": params or [], "max_rows": 1000}
        if min_position is not None:
            payload.update(min_position=str(min_position), timeout_ms=10_000)
        answer = self.invoke(payload)
        assert "error" not in answer, answer
        rows: list[Any] = answer["rows"]
        return rows

    def queue_depth(self, url_key: str) -> int:
        attributes = self.sqs().get_queue_attributes(
            QueueUrl=self.endpoints[url_key],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--data-dir", str(self.data_dir), timeout=timeout)


def run_cli(
    *args: str, timeout: float = 120.0, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key in ("EFSQLITE_QUEUE_URL", "EFSQLITE_READER_FUNCTION", "EFSQLITE_ENDPOINTS"):
        env.pop(key, None)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "efsqlite", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.2, what: str = "") -> Any:
    """Poll ``predicate`` until truthy; bounded by time (and so by count)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A shared stack for tests that do not restart or reconfigure it."""
    running = Stack(tmp_path_factory.mktemp("stack"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Any]:
    """A stack of the test's own, started by the test (options vary)."""
    created: list[Stack] = []

    class Factory:
        def __call__(self, **options: Any) -> Stack:
            made = Stack(tmp_path, **options)
            created.append(made)
            return made

    yield Factory()
    for made in created:
        made.stop(signal.SIGKILL)


def running_stack(root: Path, **options: Any) -> Iterator[Stack]:
    """A started :class:`Stack` for a fixture to yield, stopped when the fixture ends."""
    stack = Stack(root, **options)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
