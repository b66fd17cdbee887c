"""The local stack (``efsqlite dev``) as a real subprocess that tests can kill and restart.

Ports are chosen free once and kept across restarts, as a deployed queue URL stays the same;
the data folder (databases and the queue journal) is kept too, so a restart is what a crashed
writer or host coming back looks like.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults.harness import REPO


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

    @property
    def endpoints_file(self) -> Path:
        return self.data_dir / "endpoints.json"

    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(REPO / "shared"), str(REPO)])
        return dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")

    def start(self, prefix: Sequence[str] = (), timeout: float = 60.0) -> dict[str, Any]:
        """Start (or restart) and wait until ``endpoints.json`` is written anew."""
        self.endpoints_file.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "efsqlite", "dev", *self.args],
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

    def database(self, db: str) -> Path:
        return self.data_dir / "databases" / f"{db}.sqlite"
