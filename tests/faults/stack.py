"""The local stack (``efsqlite dev``) as a real subprocess that tests can kill and restart.

Ports are chosen free once and kept across restarts, as a deployed queue URL stays the same;
the data folder (databases and the queue journal) is kept too, so a restart is what a crashed
writer or host coming back looks like. Its readers run in snapshot mode with patching on (the
defaults, spelled out), and each of their refreshes is noted (``stack_main.py``), so a test
can check that refreshes patched rather than copied whole files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults.harness import REPO

#: Runs ``efsqlite dev`` and notes each reader snapshot refresh (see its docstring).
MAIN = Path(__file__).with_name("stack_main.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalStack:
    """One ``efsqlite dev`` on a data folder, restartable after SIGKILL."""

    def __init__(
        self,
        data_dir: Path,
        *,
        migrations: Path,
        commands: str | None = None,
        visibility_timeout: int = 2,
        max_receive_count: int = 5,
        read_mode: str = "snapshot",
    ) -> None:
        self.data_dir = data_dir
        self.ports = [free_port(), free_port(), free_port()]
        self.args = [
            "--data-dir", str(data_dir),
            "--migrations-dir", str(migrations),
            "--sqs-port", str(self.ports[0]),
            "--lambda-port", str(self.ports[1]),
            "--url-port", str(self.ports[2]),
            "--no-console",
            "--visibility-timeout", str(visibility_timeout),
            "--max-receive-count", str(max_receive_count),
            "--read-mode", read_mode,
        ]  # fmt: skip
        if commands:
            self.args += ["--commands", commands]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = data_dir.parent / f"{data_dir.name}-stack.log"
        #: One JSON line per reader snapshot refresh, across restarts (``stack_main.py``).
        self.refresh_log = data_dir.parent / f"{data_dir.name}-refreshes.jsonl"

    @property
    def endpoints_file(self) -> Path:
        return self.data_dir / "endpoints.json"

    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(REPO / "shared"), str(REPO)])
        return dict(
            os.environ,
            PYTHONPATH=path,
            PYTHONDONTWRITEBYTECODE="1",
            # The readers' default, spelled out: a refresh patches the previous snapshot.
            EFSQLITE_SNAPSHOT_PATCH="true",
            EFSQLITE_TEST_REFRESH_LOG=str(self.refresh_log),
        )

    def start(self, prefix: Sequence[str] = (), timeout: float = 60.0) -> dict[str, Any]:
        """Start (or restart) and wait until ``endpoints.json`` is written anew."""
        self.endpoints_file.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, str(MAIN), "dev", *self.args],
                cwd=REPO,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.endpoints_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"stack exited {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stack did not start: {self.tail()}")
            time.sleep(0.05)
        return dict(json.loads(self.endpoints_file.read_text()))

    def kill(self) -> None:
        """SIGKILL the whole stack (its process group: strace too, when it wraps it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def wait_dead(self, timeout: float) -> bool:
        """Wait for the stack to die of an injected fault; True if it did."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def refreshes(self) -> Counter[str]:
        """The readers' snapshot refreshes so far: "patch", why the whole file was copied, or
        "failed: <error type>"."""
        found: Counter[str] = Counter()
        try:
            lines = self.refresh_log.read_text().splitlines()
        except FileNotFoundError:
            return found
        for line in lines:
            try:
                refresh = json.loads(line)
            except ValueError:  # the last line of a stack killed while writing it
                continue
            if "failed" in refresh:
                found["failed: " + refresh["failed"].split(":", 1)[0]] += 1
            else:
                found["patch" if refresh["patched"] else str(refresh["reason"])] += 1
        return found

    def misled_refreshes(self) -> list[str]:
        """Refreshes that show a page log misleading a reader: a copy that failed its check
        (``SnapshotError``), or a page that differs from what its log entry says."""
        return [
            kind
            for kind in self.refreshes()
            if kind.startswith("failed: SnapshotError") or "differs from its page log" in kind
        ]

    def database(self, db: str) -> Path:
        return self.data_dir / "databases" / f"{db}.sqlite"
