"""Where the infrastructure checkers live, and how they run.

The checkers have their own virtualenvs under ``.tools/`` (``make infra-tools`` installs
them): ``.tools/sam`` holds aws-sam-cli and cfn-lint, ``.tools/checkov`` holds checkov, which
pins a boto3 that conflicts with aws-sam-cli. A missing tool skips its test with the reason,
except in CI (``CI`` set), where it fails the test: CI must never pass a check it did not run.

The tools are slow to start (seconds each), so :class:`Launch` starts them all at once and
each test waits only for its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from tests.infra.cfn import REPO

#: Where ``scripts/install-infra-tools`` puts the venvs (same override variable).
TOOLS = Path(os.environ.get("EFSQLITE_TOOLS_DIR") or REPO / ".tools")
INSTALL_HINT = "run `make infra-tools` (scripts/install-infra-tools) to install it"
TIMEOUT_S = 240


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    """Skip the calling test, or fail it in CI, where every check must really run."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this check may not be skipped)")
    pytest.skip(reason)


def locate(venv: str, name: str) -> tuple[Path | None, str]:
    """The tool's path, or None and why not."""
    path = TOOLS / venv / "bin" / name
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    return None, f"{name} not found at {path}: {INSTALL_HINT}"


def locate_python313() -> tuple[Path | None, str]:
    """The Lambda runtime's interpreter, which `sam build` without a container needs on PATH."""
    try:
        found = subprocess.run(
            [str(REPO / "scripts" / "find-python")],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        version = subprocess.run(
            [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"scripts/find-python found no usable Python: {exc}"
    if version != "3.13":
        return None, (
            "sam build needs python3.13 (the Lambda runtime) on PATH, and no container is "
            f"used; scripts/find-python gave {found} (Python {version or 'unknown'})"
        )
    return Path(found), ""


def tool_env(python: Path | None = None) -> dict[str, str]:
    """The environment for a tool run: no telemetry, a region, no credentials needed."""
    env = dict(os.environ)
    env.update({"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"})
    if python is not None:
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Run:
    """One tool run: finished (returncode and output) or never started (reason)."""

    args: list[str]
    reason: str = ""
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def output(self) -> str:
        return f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n{self.stdout}\n{self.stderr}"


@dataclass
class Launch:
    """Tool runs started together in the background; ``result`` waits for one of them."""

    runs: dict[str, tuple[Run, subprocess.Popen[str] | None, float]] = field(default_factory=dict)

    def start(
        self, name: str, args: list[str | Path], reason: str = "", python: Path | None = None
    ) -> None:
        run = Run([str(a) for a in args], reason=reason)
        if reason:
            self.runs[name] = (run, None, 0.0)
            return
        proc = subprocess.Popen(
            run.args,
            cwd=REPO,
            env=tool_env(python),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.runs[name] = (run, proc, time.monotonic())

    def result(self, name: str) -> Run:
        run, proc, started = self.runs[name]
        if proc is None:
            missing(run.reason)
        if proc.returncode is None:
            try:
                run.stdout, run.stderr = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                run.stdout, run.stderr = proc.communicate()
                pytest.fail(f"{name} took over {TIMEOUT_S}s:\n{run.output}")
            run.returncode = proc.returncode
            run.seconds = time.monotonic() - started
        return run

    def stop(self) -> None:
        for _, proc, _ in self.runs.values():
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


def locate_aws_cli() -> tuple[Path | None, str]:
    """The AWS CLI v1 from ``.tools/awscli`` (``make infra-tools``), else ``aws`` on PATH."""
    path, reason = locate("awscli", "aws")
    if path is not None:
        return path, ""
    found = shutil.which("aws")
    if found:
        return Path(found), ""
    return None, f"{reason}; no aws on PATH either"
