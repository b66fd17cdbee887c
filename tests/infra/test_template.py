"""Invariants of infra/template.yaml that the design depends on (see docs/deploy.md)."""

from __future__ import annotations

import re

from tests.infra import cfn
from tests.infra.cfn import Template


def test_writer_is_one_fifo_consumer_with_partial_batches(template: Template) -> None:
    # GIVEN the template
    # WHEN the writer, its event source, its queue and its DLQ are checked
    problems = cfn.writer_problems(template)
    # THEN concurrency 1, FIFO queue and DLQ, BatchSize <= 10, ReportBatchItemFailures,
    # visibility >= 6x timeout, maxReceiveCount >= 5 and the mount path all hold
    assert problems == []


def test_writer_concurrency_is_a_parameter_defaulting_to_one(template: Template) -> None:
    # GIVEN the writer's reserved concurrency (the brief's multi-database trap)
    value = cfn.when_set(template, cfn.props(template, cfn.WRITER)["ReservedConcurrentExecutions"])
    # WHEN it is resolved
    param = cfn.parameter(template, value)
    # THEN it is a parameter, default 1, documented as at least the number of databases
    assert param is not None
    assert param["Default"] == 1
    assert "at least the number of databases" in param["Description"]


def test_reader_role_has_no_client_write_anywhere(template: Template) -> None:
    # GIVEN the template
    # WHEN every policy reaching the reader's role is searched for EFS write access
    problems = cfn.reader_write_problems(template)
    # THEN there is none: the reader is read-only at the NFS level too
    assert problems == []


def test_reader_can_still_mount(template: Template) -> None:
    # GIVEN the reader's role
    role = cfn.role_of(template, cfn.READER)
    assert role is not None
    # WHEN its statements are listed
    found = cfn.role_statements(template, role)
    # THEN ClientMount is granted (a read-only mount needs it when a file system policy exists)
    assert any(cfn.grants(s, "elasticfilesystem:ClientMount") for _, s in found)


def test_writer_role_grants_only_queue_efs_and_vpc_execution(template: Template) -> None:
    # GIVEN the template
    # WHEN the writer's role is checked against the allowed actions
    problems = cfn.writer_role_problems(template)
    # THEN it consumes the queue, mounts and writes EFS, and has the VPC execution policy only
    assert problems == []


def test_no_nat_gateway_and_nfs_only_between_the_groups(template: Template) -> None:
    # GIVEN the template
    # WHEN the network resources are checked
    problems = cfn.network_problems(template)
    # THEN there is no NAT gateway, internet gateway or interface endpoint, and the only
    # ingress is NFS from the functions' security group
    assert problems == []
    assert cfn.resources(template, "AWS::EC2::NatGateway") == {}


def test_efs_is_encrypted_backed_up_tls_only_with_a_proper_access_point(
    template: Template,
) -> None:
    # GIVEN the template
    # WHEN the EFS resources are checked
    problems = cfn.efs_problems(template)
    # THEN encryption, backups, the TLS-only policy and the access point hold
    assert problems == []


def test_every_checkov_skip_has_a_written_reason(template: Template) -> None:
    # GIVEN the template's checkov skips
    skips = [
        s
        for r in cfn.resources(template).values()
        for s in ((r.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
    ]
    # WHEN they are checked
    problems = cfn.checkov_skip_problems(template)
    # THEN there are some (CKV_AWS_116 at least) and each carries a reason
    assert any(s["id"] == "CKV_AWS_116" for s in skips)
    assert problems == []


def test_reader_concurrency_stays_below_efs_lock_limit(template: Template) -> None:
    # GIVEN the reader's reserved and provisioned concurrency
    reader = cfn.props(template, cfn.READER)
    reserved = cfn.parameter(
        template, cfn.when_set(template, reader["ReservedConcurrentExecutions"])
    )
    provisioned = cfn.parameter(
        template,
        reader["ProvisionedConcurrencyConfig"]["Fn::If"][1]["ProvisionedConcurrentExecutions"],
    )
    # WHEN their bounds are read
    # THEN both are parameters that cannot reach EFS's 512 locks per file, and provisioned
    # concurrency defaults to 0 (on the alias that AutoPublishAlias creates)
    assert reserved is not None and provisioned is not None
    assert reserved["MaxValue"] < 512
    assert provisioned["Default"] == 0
    assert provisioned["MaxValue"] <= reserved["MaxValue"]
    assert reader["AutoPublishAlias"]


def test_function_url_is_optional_and_iam_only(template: Template) -> None:
    # GIVEN the template's function URLs
    urls = cfn.resources(template, "AWS::Lambda::Url")
    # WHEN they are inspected
    # THEN each is conditional and uses AWS_IAM, and the reader has no SAM FunctionUrlConfig
    assert urls
    for url in urls.values():
        assert url.get("Condition")
        assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert "FunctionUrlConfig" not in cfn.props(template, cfn.READER)


def test_layer_is_built_for_the_runtime(template: Template) -> None:
    # GIVEN the shared layer
    layers = cfn.resources(template, "AWS::Serverless::LayerVersion")
    # WHEN it is inspected
    (layer,) = layers.values()
    # THEN sam builds it from shared/ with shared/Makefile (which chooses its contents),
    # for python3.13 on arm64
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    assert layer["Properties"]["ContentUri"].rstrip("/") == "../shared"
    assert "build-SharedLayer:" in (cfn.TEMPLATE.parents[1] / "shared" / "Makefile").read_text()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_producer_policy_sends_and_cannot_consume(template: Template) -> None:
    # GIVEN the producer policy
    doc = cfn.props(template, "ProducerPolicy")["PolicyDocument"]
    found = cfn.statements(doc)
    # WHEN its grants are checked
    # THEN it can send and cannot consume; SSE-SQS needs no KMS grant, so it has none
    assert any(cfn.grants(s, "sqs:SendMessage") for s in found)
    assert not any(cfn.grants(s, "sqs:ReceiveMessage") for s in found)
    assert not any(cfn.grants(s, "kms:Decrypt") for s in found)


def test_queues_are_encrypted_without_a_kms_charge(template: Template) -> None:
    # GIVEN both queues
    for queue in ("CommandQueue", "DeadLetterQueue"):
        q = cfn.props(template, queue)
        # THEN they use SSE-SQS (no KMS request per message), not a KMS key
        assert q["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in q
    # AND no role or policy of the stack grants KMS actions any more
    assert "kms:" not in cfn.TEMPLATE.read_text().lower().replace("kms key", "")


def test_a_small_quota_account_deploys_with_one_parameter(template: Template) -> None:
    # GIVEN ReserveConcurrency (accounts whose quota is 10 cannot reserve any execution)
    param = template["Parameters"]["ReserveConcurrency"]
    assert param["Default"] == "true" and param["AllowedValues"] == ["true", "false"]
    condition = template["Conditions"]["ReservesConcurrency"]
    assert condition == {"Fn::Equals": [{"Ref": "ReserveConcurrency"}, "true"]}
    # THEN set to false, both functions reserve nothing, and nothing else needs to change
    for function in (cfn.WRITER, cfn.READER):
        value = cfn.props(template, function)["ReservedConcurrentExecutions"]
        assert value["Fn::If"][0] == "ReservesConcurrency"
        assert value["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    # AND it is documented where the deployer reads it
    assert "efsqlite doctor --aws" in param["Description"]
    assert "ReserveConcurrency=false" in (cfn.REPO / "docs" / "deploy.md").read_text()


def test_cheap_defaults(template: Template) -> None:
    params = template["Parameters"]
    # Bursting throughput (no charge per byte), no custom metrics, three days of backups
    assert params["EfsThroughputMode"]["Default"] == "bursting"
    assert params["CustomMetrics"]["Default"] == "false"
    assert params["BackupRetentionDays"]["Default"] == 3
    env = cfn.environment(template, cfn.WRITER)
    assert env["POWERTOOLS_METRICS_DISABLED"] == {"Fn::If": ["HasCustomMetrics", "false", "true"]}
    # AND every alarm watches a metric AWS publishes for free (AWS/SQS, AWS/Lambda)
    alarms = cfn.resources(template, "AWS::CloudWatch::Alarm")
    assert alarms and {a["Properties"]["Namespace"] for a in alarms.values()} <= {
        "AWS/SQS",
        "AWS/Lambda",
    }


def test_outputs_the_cli_needs(template: Template) -> None:
    # GIVEN the outputs
    outputs = template["Outputs"]
    # WHEN their names are read
    # THEN everything the CLI needs to target the stack is there; FunctionUrl is conditional
    for name in (
        "QueueUrl",
        "DlqUrl",
        "ReaderFunctionName",
        "ReaderFunctionArn",
        "FunctionUrl",
        "ProducerPolicyArn",
        "ReaderInvokePolicyArn",
        "OperatorPolicyArn",
    ):
        assert name in outputs, name
    assert outputs["FunctionUrl"]["Condition"] == "HasFunctionUrl"


def test_alarms_cover_dlq_age_and_writer_errors(template: Template) -> None:
    # GIVEN the alarms
    alarms = cfn.resources(template, "AWS::CloudWatch::Alarm").values()
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    # WHEN the metrics they watch are listed
    # THEN DLQ depth, oldest message age and writer errors are watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in metrics
    assert ("AWS/Lambda", "Errors") in metrics


def test_the_preflight_checks_the_template_defaults(template: Template) -> None:
    # GIVEN what `efsqlite doctor --aws` assumes the stack reserves
    from efsqlite.client import preflight

    params = template["Parameters"]
    # THEN it is what the template reserves by default, under the same reader cap
    assert params["WriterReservedConcurrency"]["Default"] == preflight.WRITER_RESERVED
    assert params["ReaderReservedConcurrency"]["Default"] == preflight.READER_RESERVED
    assert params["ReaderReservedConcurrency"]["MaxValue"] == preflight.READER_CAP


def test_the_cost_model_prices_the_templates_defaults(template: Template) -> None:
    # GIVEN what efsqlite cost assumes of the template
    from efsqlite.client import cost

    defaults = cost.TEMPLATE_DEFAULTS
    params = template["Parameters"]
    # THEN each assumption is the template's default
    assert params["EfsThroughputMode"]["Default"] == defaults["throughput"]
    assert params["EfsOneZoneAvailabilityZone"]["Default"] == ""
    assert defaults["storage"] == "regional"
    assert params["BackupRetentionDays"]["Default"] == defaults["backup_days"]
    assert (params["CustomMetrics"]["Default"] == "true") is defaults["custom_metrics"]
    assert (params["PlatformLogs"]["Default"] == "true") is defaults["platform_logs"]
    assert (params["DetailedAlarms"]["Default"] == "true") is defaults["detailed_alarms"]
    assert params["ReaderReadMode"]["Default"] == defaults["read_mode"]
    assert params["ReaderMemoryMb"]["Default"] == defaults["reader_memory_mb"]
    assert cfn.props(template, cfn.WRITER)["MemorySize"] == defaults["writer_memory_mb"]
    assert params["LedgerRetentionDays"]["Default"] == defaults["ledger_retention_days"]
    assert params["LogRetentionDays"]["Default"] == defaults["log_retention_days"]
    assert params["ReaderMaxStalenessMs"]["Default"] == defaults["staleness_s"] * 1000
    # AND the alarms it counts are the template's: always on, and behind DetailedAlarms
    alarms = cfn.resources(template, "AWS::CloudWatch::Alarm")
    always = [name for name, a in alarms.items() if "Condition" not in a]
    detailed = [name for name, a in alarms.items() if a.get("Condition") == "HasDetailedAlarms"]
    assert len(always) == defaults["alarms"]
    assert len(detailed) == defaults["detailed_alarms_extra"]
    assert len(always) + len(detailed) == len(alarms)
    # AND the custom metrics it prices are the ones the writer emits
    app = (cfn.REPO / "functions" / "writer" / "app.py").read_text()
    emitted = set(re.findall(r'add_metric\(\s*"(\w+)"', app))
    assert emitted == set(cost.WRITER_METRICS)
