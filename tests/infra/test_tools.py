"""The offline checks a security team runs on the template: cfn-lint, sam validate --lint,
checkov and sam build. They start together (see tests/infra/tools.py) and each test reads
its own result."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from efsqlite.core import engine

from tests.infra.cfn import TEMPLATE
from tests.infra.edits import drop_writer_reserved_concurrency
from tests.infra.tools import Launch, locate, locate_python313, missing

RELATIVE_TEMPLATE = TEMPLATE.relative_to(TEMPLATE.parents[1])
SOURCE = TEMPLATE.parents[1] / "shared" / "efsqlite"
#: The parts the Lambda layer ships (shared/Makefile's LAYER_PACKAGES).
ENGINE_PARTS = ("core", "write", "read")
#: The bytecode file of a module for the runtime (CPython 3.13, optimisation level 0).
PYC_TAG = "cpython-313"
#: A .pyc's flags word (PEP 552): bit 0 hash-based, bit 1 check the source. 0b01: a hash-based
#: .pyc the import system trusts without reading the source (--invalidation-mode unchecked-hash).
UNCHECKED_HASH = 0b01
#: Run by the runtime's interpreter: its magic number, and each module's source hash (which a
#: hash-based .pyc carries in bytes 8 to 16), for the layer folder given as argv[1].
_BYTECODE_FACTS = """
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
print(json.dumps({
    "magic": importlib.util.MAGIC_NUMBER.hex(),
    "cache_tag": sys.implementation.cache_tag,
    "hashes": {
        p.relative_to(root).as_posix(): importlib.util.source_hash(p.read_bytes()).hex()
        for p in sorted(root.rglob("*.py"))
    },
}))
"""


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Launch, Path, Path]]:
    """Start every available checker at once. Yields the launch, the sam build folder and
    the copy of the template with the writer's reserved concurrency removed."""
    launch = Launch()
    work = tmp_path_factory.mktemp("infra-tools")
    broken = work / "broken" / "template.yaml"
    broken.parent.mkdir()
    broken.write_text(drop_writer_reserved_concurrency(TEMPLATE.read_text()), encoding="utf-8")
    build_dir = work / "build"

    cfn_lint, why = locate("sam", "cfn-lint")
    launch.start("cfn-lint", [cfn_lint or "cfn-lint", RELATIVE_TEMPLATE], why)
    sam, why = locate("sam", "sam")
    launch.start("sam validate", [sam or "sam", "validate", "--lint", "-t", RELATIVE_TEMPLATE], why)
    python, why_python = locate_python313()
    launch.start(
        "sam build",
        [
            sam or "sam",
            "build",
            "-t",
            RELATIVE_TEMPLATE,
            "--build-dir",
            build_dir,
            "--cache-dir",
            work / "cache",
        ],
        why or why_python,
        python=python,
    )
    checkov, why = locate("checkov", "checkov")
    launch.start(
        "checkov",
        [
            checkov or "checkov",
            "-f",
            RELATIVE_TEMPLATE,
            "-f",
            broken,
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ],
        why,
    )
    try:
        yield launch, build_dir, broken
    finally:
        launch.stop()


def checkov_results(launch: Launch) -> dict[str, Any]:
    run = launch.result("checkov")
    assert run.returncode in (0, 1), run.output  # 1: some check failed (the broken copy)
    report = json.loads(run.stdout)
    assert isinstance(report, dict), run.output
    assert report["check_type"] == "cloudformation"
    results: dict[str, Any] = report["results"]
    return results


def in_file(checks: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    return [
        c
        for c in checks
        if Path(c["file_path"]).name == path.name
        and (Path(c["file_path"]).parent.name == path.parent.name)
    ]


def test_cfn_lint_reports_no_errors_and_no_warnings(tools: tuple[Launch, Path, Path]) -> None:
    # GIVEN the template
    launch, _, _ = tools
    # WHEN cfn-lint checks it (exit 2: errors, 4: warnings, 8: informational)
    run = launch.result("cfn-lint")
    # THEN it reports nothing at all
    assert run.returncode == 0, run.output
    assert run.stdout.strip() == "", run.output


def test_sam_validate_lint_passes(tools: tuple[Launch, Path, Path]) -> None:
    # GIVEN the template and no AWS credentials
    launch, _, _ = tools
    # WHEN sam validates it with its linter
    run = launch.result("sam validate")
    # THEN it is a valid SAM template
    assert run.returncode == 0, run.output
    assert "is a valid SAM Template" in run.stdout + run.stderr, run.output


def test_checkov_has_no_unsuppressed_failures(tools: tuple[Launch, Path, Path]) -> None:
    # GIVEN the template
    launch, _, _ = tools
    # WHEN checkov scans it
    results = checkov_results(launch)
    passed = in_file(results["passed_checks"], TEMPLATE)
    failed = in_file(results["failed_checks"], TEMPLATE)
    skipped = in_file(results["skipped_checks"], TEMPLATE)
    # THEN nothing fails, checks really ran, and every skip carries its written reason
    assert [(c["check_id"], c["resource"]) for c in failed] == []
    assert len(passed) >= 20
    assert skipped, "expected the documented skips (CKV_AWS_116, ...)"
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "").split()) >= 8, check


def test_checkov_catches_the_writer_without_reserved_concurrency(
    tools: tuple[Launch, Path, Path],
) -> None:
    # GIVEN a copy of the template whose writer lost ReservedConcurrentExecutions
    launch, _, broken = tools
    # WHEN checkov scans it (in the same run as the real template)
    failed = in_file(checkov_results(launch)["failed_checks"], broken)
    # THEN the function-level concurrency check fails on the writer
    assert [(c["check_id"], c["resource"]) for c in failed] == [
        ("CKV_AWS_115", "AWS::Serverless::Function.WriterFunction")
    ]


def test_sam_build_builds_the_layer_and_functions(tools: tuple[Launch, Path, Path]) -> None:
    # GIVEN the template, python3.13 on PATH and no container
    launch, build_dir, _ = tools
    # WHEN sam builds it into a temporary folder
    run = launch.result("sam build")
    # THEN the build succeeds, the layer holds efsqlite with arm64 wheels and no boto3,
    # and the writer's handler is in place
    assert run.returncode == 0, run.output
    assert "Build Succeeded" in run.stdout + run.stderr, run.output
    layer = build_dir / "SharedLayer" / "python"
    assert (layer / "aws_lambda_powertools").is_dir()
    assert list((layer / "pydantic_core").glob("*aarch64*.so")), "pydantic_core is not arm64"
    # AND it ships the pinned SQLite build for arm64 (efsqlite.core.engine), the one the tests run
    assert list((layer / "apsw").glob("*aarch64*.so")), "apsw (the pinned SQLite) is not arm64"
    (dist,) = layer.glob("apsw-*.dist-info")
    assert dist.name == f"apsw-{engine.engine_info()['apsw']}.dist-info"
    assert not (layer / "boto3").exists()
    assert (build_dir / "WriterFunction" / "app.py").is_file()
    assert not (TEMPLATE.parent / ".aws-sam").exists(), "sam build wrote into the repository"


def test_the_layer_ships_the_engine_and_nothing_else(tools: tuple[Launch, Path, Path]) -> None:
    # GIVEN the layer sam built (shared/Makefile chooses its contents)
    launch, build_dir, _ = tools
    assert launch.result("sam build").returncode == 0, launch.result("sam build").output
    layer = build_dir / "SharedLayer" / "python"
    # WHEN listing its efsqlite package
    shipped = sorted(
        p.relative_to(layer).as_posix() for p in (layer / "efsqlite").rglob("*") if p.is_file()
    )
    # THEN it is exactly the engine's source files (core, write, read), each with its 3.13
    # bytecode and no other: no client, CLI or local stack, and every engine module is there
    engine_files = [
        p.relative_to(SOURCE.parent)
        for part in ("", *ENGINE_PARTS)
        for p in (SOURCE / part).glob("*.py")
        if part or p.name == "__init__.py"
    ]
    expected = ["efsqlite/py.typed"]
    for source in engine_files:
        expected.append(source.as_posix())
        expected.append((source.parent / "__pycache__" / f"{source.stem}.{PYC_TAG}.pyc").as_posix())
    assert shipped == sorted(expected)
    assert {p.name for p in (layer / "efsqlite").iterdir() if p.is_dir()} == {
        *ENGINE_PARTS,
        "__pycache__",
    }
    # AND the third-party packages are the layer's pins and what they need, not moto or boto3
    top = {p.name for p in layer.iterdir() if not p.name.endswith(".dist-info")}
    assert {"apsw", "pydantic", "pydantic_core", "aws_lambda_powertools"} <= top
    assert not top & {"boto3", "botocore", "moto", "bin", "requirements.txt", "Makefile"}, top


def test_every_module_in_the_layer_ships_unchecked_bytecode_for_the_runtime(
    tools: tuple[Launch, Path, Path],
) -> None:
    # GIVEN the layer sam built, and the runtime's interpreter (python3.13, which may not be
    # the one running the tests: the magic number must be 3.13's)
    launch, build_dir, _ = tools
    assert launch.result("sam build").returncode == 0, launch.result("sam build").output
    layer = build_dir / "SharedLayer" / "python"
    python, why = locate_python313()
    if python is None:
        missing(why)
    facts = json.loads(
        subprocess.run(
            [str(python), "-I", "-B", "-c", _BYTECODE_FACTS, str(layer)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    assert facts["cache_tag"] == PYC_TAG
    magic = bytes.fromhex(facts["magic"])
    sources: dict[str, str] = facts["hashes"]
    # WHEN reading the header of each module's __pycache__/<name>.cpython-313.pyc
    problems = []
    for relative, source_hash in sources.items():
        source = layer / relative
        pyc = source.parent / "__pycache__" / f"{source.stem}.{PYC_TAG}.pyc"
        if not pyc.is_file():
            problems.append(f"{relative}: no {pyc.relative_to(layer)}")
            continue
        header = pyc.read_bytes()[:16]
        flags = int.from_bytes(header[4:8], "little")
        # THEN it is 3.13's, hash-based and unchecked, and compiled from the source shipped
        if header[:4] != magic:
            problems.append(f"{relative}: magic {header[:4].hex()}, not 3.13's {magic.hex()}")
        elif flags != UNCHECKED_HASH:
            problems.append(f"{relative}: flags {flags:#04b}, not unchecked-hash (0b01)")
        elif header[8:16].hex() != source_hash:
            problems.append(f"{relative}: compiled from another source (hash differs)")
    assert problems == [], "\n".join(problems[:20]) + f"\n({len(problems)} in all)"
    # AND that covers the third-party packages and efsqlite alike, and no bytecode is stray
    assert {"efsqlite/core/engine.py", "pydantic/main.py", "typing_extensions.py"} <= set(sources)
    assert len(sources) > 300, len(sources)
    stray = [
        p.relative_to(layer).as_posix()
        for p in layer.rglob("*.pyc")
        if p.parent.name != "__pycache__"
        or not p.name.endswith(f".{PYC_TAG}.pyc")
        or p.parent.parent.relative_to(layer).joinpath(p.name.split(".")[0] + ".py").as_posix()
        not in sources
    ]
    assert stray == []
