"""Break a temporary copy of the template on purpose: each break must be caught.

The copies are edited as text, the way a person would edit the template, then parsed and
checked exactly like the real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra import cfn
from tests.infra.edits import drop_line, drop_writer_reserved_concurrency, edit_resource

MakeCopy = Callable[[Callable[[str], str]], Path]


def test_real_template_passes_the_checks_the_breaks_must_trip() -> None:
    # GIVEN the real template
    template = cfn.load_template()
    # WHEN the checks used below run on it
    # THEN they report nothing, so any problem below comes from the break
    assert cfn.writer_problems(template) == []
    assert cfn.reader_write_problems(template) == []


def test_removing_the_writer_reserved_concurrency_is_caught(template_copy: MakeCopy) -> None:
    # GIVEN a copy whose writer has no ReservedConcurrentExecutions
    broken = template_copy(drop_writer_reserved_concurrency)
    # WHEN the writer invariants run on it
    problems = cfn.writer_problems(cfn.load_template(broken))
    # THEN the missing guard is reported
    assert problems == ["writer has no ReservedConcurrentExecutions"]


def test_a_standard_dlq_is_caught(template_copy: MakeCopy) -> None:
    # GIVEN a copy whose DLQ is a standard queue (no FifoQueue, no .fifo name)
    def standard(block: str) -> str:
        block = drop_line(r"FifoQueue: true")(block)
        return block.replace("-commands-dlq.fifo", "-commands-dlq")

    broken = template_copy(edit_resource("DeadLetterQueue", standard))
    # WHEN the writer invariants run on it
    problems = cfn.writer_problems(cfn.load_template(broken))
    # THEN the non-FIFO DLQ is reported
    assert problems == ["DLQ DeadLetterQueue is not FIFO (FifoQueue: true)"]


@pytest.mark.parametrize(
    ("resource", "anchor", "grant"),
    [
        # the reader's own EFS policy gains ClientWrite
        ("ReaderEfsPolicy", "- elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"),
        # the same through a wildcard
        ("ReaderEfsPolicy", "- elasticfilesystem:ClientMount", "elasticfilesystem:Client*"),
        # the file system policy lets the reader's role write
        ("FileSystem", "- elasticfilesystem:ClientMount\n            Condition", None),
    ],
)
def test_giving_the_reader_client_write_is_caught(
    template_copy: MakeCopy, resource: str, anchor: str, grant: str | None
) -> None:
    # GIVEN a copy where the reader's role gains EFS write access
    def add_write(block: str) -> str:
        if grant is None:  # the reader's statement in the file system policy is the last one
            at = block.rindex(anchor)
            extra = "- elasticfilesystem:ClientMount\n              - elasticfilesystem:ClientWrite"
            return block[:at] + block[at:].replace("- elasticfilesystem:ClientMount", extra, 1)
        indent = re.search(rf"(?m)^(\s*){re.escape(anchor)}", block)
        assert indent is not None
        return block.replace(anchor, f"{anchor}\n{indent.group(1)}- {grant}", 1)

    broken = template_copy(edit_resource(resource, add_write))
    # WHEN the reader invariant runs on it
    problems = cfn.reader_write_problems(cfn.load_template(broken))
    # THEN the write grant is reported
    assert len(problems) == 1
    assert "elasticfilesystem:ClientWrite" in problems[0]


def test_a_reader_managed_write_policy_is_caught(template_copy: MakeCopy) -> None:
    # GIVEN a copy where the reader's role gets AWS's read-write EFS client policy
    def attach(block: str) -> str:
        arn = "arn:${AWS::Partition}:iam::aws:policy/AmazonElasticFileSystemClientReadWriteAccess"
        line = f'        - !Sub "{arn}"\n'
        at = block.index("      ManagedPolicyArns:\n") + len("      ManagedPolicyArns:\n")
        return block[:at] + line + block[at:]

    broken = template_copy(edit_resource("ReaderRole", attach))
    # WHEN the reader invariant runs on it
    problems = cfn.reader_write_problems(cfn.load_template(broken))
    # THEN the policy is reported
    assert problems == [
        "reader role ReaderRole has AWS managed policy "
        "AmazonElasticFileSystemClientReadWriteAccess (may grant writes)"
    ]


def test_a_low_visibility_timeout_and_receive_count_are_caught(template_copy: MakeCopy) -> None:
    # GIVEN a copy with a visibility timeout below 6x the writer timeout and maxReceiveCount 3
    def loosen(block: str) -> str:
        block = block.replace("VisibilityTimeout: 360", "VisibilityTimeout: 120")
        return block.replace("maxReceiveCount: !Ref MaxReceiveCount", "maxReceiveCount: 3")

    broken = template_copy(edit_resource("CommandQueue", loosen))
    # WHEN the writer invariants run on it
    problems = cfn.writer_problems(cfn.load_template(broken))
    # THEN both are reported
    assert problems == [
        "queue VisibilityTimeout 120s is below 6x the writer Timeout 60s",
        "maxReceiveCount is not at least 5",
    ]


def test_a_nat_gateway_is_caught(template_copy: MakeCopy) -> None:
    # GIVEN a copy with a NAT gateway added
    def add_nat(text: str) -> str:
        nat = (
            "  Nat:\n    Type: AWS::EC2::NatGateway\n"
            "    Properties:\n      SubnetId: !Ref PrivateSubnet1\n\n"
        )
        return text.replace("  FunctionsSecurityGroup:\n", nat + "  FunctionsSecurityGroup:\n", 1)

    broken = template_copy(add_nat)
    # WHEN the network invariants run on it
    problems = cfn.network_problems(cfn.load_template(broken))
    # THEN the NAT gateway is reported
    assert problems == ["Nat is a AWS::EC2::NatGateway"]
