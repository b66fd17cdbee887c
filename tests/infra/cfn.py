"""Read ``infra/template.yaml`` and check the invariants the design depends on.

Each ``*_problems`` function returns a list of human-readable problems (empty when the
template is right), so the same checks serve the tests of the real template and the tests
that break a temporary copy on purpose and expect the break to be reported.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "template.yaml"

WRITER = "WriterFunction"
READER = "ReaderFunction"
#: Lambda's rule for a function's EFS mount path.
MOUNT_PATH_RE = re.compile(r"^/mnt/[a-zA-Z0-9-_.]+$")
#: SQS's largest message; the wire format's packed messages rely on it.
SQS_MAX_MESSAGE_BYTES = 1_048_576
#: The AWS managed policy that gives a VPC function its network interfaces and its logs.
VPC_EXECUTION_POLICY = "AWSLambdaVPCAccessExecutionRole"
#: Everything the writer's role may do, beside VPC_EXECUTION_POLICY.
WRITER_ACTIONS = {
    "sqs:receivemessage",
    "sqs:deletemessage",
    "sqs:changemessagevisibility",
    "sqs:getqueueattributes",
    "elasticfilesystem:clientmount",
    "elasticfilesystem:clientwrite",
}
CLIENT_WRITE = "elasticfilesystem:ClientWrite"

Template = dict[str, Any]


# -- loading ----------------------------------------------------------------------------------
class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation's short-form tags as their long forms."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> Template:
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=CfnLoader)  # a SafeLoader subclass: safe
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


# -- navigation -------------------------------------------------------------------------------
def resources(t: Template, type_: str | None = None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = t.get("Resources") or {}
    return {k: v for k, v in found.items() if type_ is None or v.get("Type") == type_}


def props(t: Template, logical_id: str) -> dict[str, Any]:
    resource = resources(t).get(logical_id)
    if resource is None:
        return {}
    return dict(resource.get("Properties") or {})


def function_setting(t: Template, function: str, key: str) -> Any:
    """A function property, falling back to the template's Globals."""
    own = props(t, function)
    if key in own:
        return own[key]
    return ((t.get("Globals") or {}).get("Function") or {}).get(key)


def ref_target(value: Any) -> str | None:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` points at, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value and isinstance(value["Ref"], str):
            return str(value["Ref"]).split(".")[0]
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def parameter(t: Template, value: Any) -> dict[str, Any] | None:
    name = value.get("Ref") if isinstance(value, dict) and len(value) == 1 else None
    found = (t.get("Parameters") or {}).get(name) if isinstance(name, str) else None
    return dict(found) if found is not None else None


def when_set(t: Template, value: Any) -> Any:
    """The value of ``Fn::If [condition, value, AWS::NoValue]`` (a setting a parameter can
    turn off), else ``value`` itself."""
    if isinstance(value, dict) and list(value) == ["Fn::If"]:
        _, then, otherwise = value["Fn::If"]
        if otherwise == {"Ref": "AWS::NoValue"}:
            return then
    return value


def resolve(t: Template, value: Any) -> Any:
    """A literal as is; a Ref to a parameter as the parameter's default."""
    param = parameter(t, value)
    if param is not None:
        return param.get("Default")
    return value


def as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


def grants(statement: dict[str, Any], action: str) -> bool:
    """Whether an Allow statement grants ``action`` (wildcards and NotAction included)."""
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        excluded = [str(a).lower() for a in as_list(statement["NotAction"])]
        return not any(fnmatch.fnmatchcase(action.lower(), p) for p in excluded)
    patterns = [str(a).lower() for a in as_list(statement.get("Action"))]
    return any(fnmatch.fnmatchcase(action.lower(), p) for p in patterns)


def role_of(t: Template, function: str) -> str | None:
    return ref_target(props(t, function).get("Role"))


def role_statements(t: Template, role: str) -> list[tuple[str, dict[str, Any]]]:
    """Every statement of every template policy that applies to ``role``, with its source."""
    found: list[tuple[str, dict[str, Any]]] = []
    role_props = props(t, role)
    for policy in as_list(role_props.get("Policies")):
        name = policy.get("PolicyName", "?")
        found += [(f"{role} inline {name}", s) for s in statements(policy.get("PolicyDocument"))]
    for arn in as_list(role_props.get("ManagedPolicyArns")):
        target = ref_target(arn)
        if target is not None:
            doc = props(t, target).get("PolicyDocument")
            found += [(f"managed {target}", s) for s in statements(doc)]
    for logical_id, resource in resources(t).items():
        rtype, p = resource.get("Type"), resource.get("Properties") or {}
        attached = [ref_target(r) for r in as_list(p.get("Roles"))]
        if rtype == "AWS::IAM::RolePolicy":
            attached.append(ref_target(p.get("RoleName")))
        if rtype in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy") and (
            role in attached
        ):
            found += [(logical_id, s) for s in statements(p.get("PolicyDocument"))]
    return found


def aws_managed_policies(t: Template, role: str) -> list[str]:
    """Names of the AWS managed policies attached to ``role`` (ARNs given as strings or Subs)."""
    names = []
    for arn in as_list(props(t, role).get("ManagedPolicyArns")):
        if ref_target(arn) is not None:
            continue
        text = arn.get("Fn::Sub") if isinstance(arn, dict) else arn
        names.append(str(text).rsplit("/", 1)[-1])
    return names


def file_system_statements(t: Template) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id in resources(t, "AWS::EFS::FileSystem"):
        doc = props(t, logical_id).get("FileSystemPolicy")
        found += [(logical_id, s) for s in statements(doc)]
    return found


def principals(statement: dict[str, Any]) -> list[Any]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return as_list(principal.get("AWS"))
    return []


def environment(t: Template, function: str) -> dict[str, Any]:
    env = function_setting(t, function, "Environment") or {}
    return dict(env.get("Variables") or {})


def resolved_environment(t: Template, function: str) -> dict[str, str]:
    """The function's variables with parameters at their defaults, as Lambda would pass them
    (a parameter without a default, which the deployer must give, is left out)."""
    out = {}
    for key, value in environment(t, function).items():
        param = parameter(t, value)
        if param is not None and "Default" not in param:
            continue
        value = resolve(t, value)
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def mount_paths(t: Template, function: str) -> list[str]:
    return [
        str(c.get("LocalMountPath")) for c in as_list(props(t, function).get("FileSystemConfigs"))
    ]


# -- invariants -------------------------------------------------------------------------------
def _queue_problems(t: Template, queue: str, label: str) -> list[str]:
    q = props(t, queue)
    problems = []
    if q.get("FifoQueue") is not True:
        problems.append(f"{label} {queue} is not FIFO (FifoQueue: true)")
    if as_number(resolve(t, q.get("MaximumMessageSize"))) != SQS_MAX_MESSAGE_BYTES:
        problems.append(f"{label} {queue} MaximumMessageSize is not {SQS_MAX_MESSAGE_BYTES}")
    if not q.get("KmsMasterKeyId") and q.get("SqsManagedSseEnabled") is not True:
        problems.append(f"{label} {queue} is not encrypted at rest (SSE-SQS or SSE-KMS)")
    return problems


def writer_problems(t: Template) -> list[str]:
    """One writer per database: concurrency, FIFO queue and DLQ, partial batches, timeouts."""
    problems: list[str] = []
    p = props(t, WRITER)
    if not p:
        return [f"no {WRITER} resource"]
    if function_setting(t, WRITER, "Runtime") != "python3.13":
        problems.append("writer runtime is not python3.13")
    if function_setting(t, WRITER, "Architectures") != ["arm64"]:
        problems.append("writer architecture is not arm64")

    if "ReservedConcurrentExecutions" not in p:
        problems.append("writer has no ReservedConcurrentExecutions")
    elif as_number(resolve(t, when_set(t, p["ReservedConcurrentExecutions"]))) != 1:
        problems.append("writer ReservedConcurrentExecutions does not default to 1")

    events = [e for e in (p.get("Events") or {}).values() if e.get("Type") == "SQS"]
    if len(events) != 1:
        return [*problems, f"writer has {len(events)} SQS events, expected exactly 1"]
    event = events[0].get("Properties") or {}
    batch = as_number(resolve(t, event.get("BatchSize")))
    if batch is None or not 1 <= batch <= 10:
        problems.append(f"writer SQS BatchSize {event.get('BatchSize')!r} is not 1..10 (FIFO)")
    if as_number(resolve(t, event.get("MaximumBatchingWindowInSeconds"))) not in (None, 0):
        problems.append("writer SQS event has a batching window (FIFO allows none)")
    if "ReportBatchItemFailures" not in as_list(event.get("FunctionResponseTypes")):
        problems.append("writer SQS event lacks FunctionResponseTypes [ReportBatchItemFailures]")

    queue = ref_target(event.get("Queue"))
    if queue is None or queue not in resources(t, "AWS::SQS::Queue"):
        return [*problems, "writer SQS event does not point at a queue in the template"]
    problems += _queue_problems(t, queue, "command queue")
    q = props(t, queue)

    timeout = as_number(resolve(t, function_setting(t, WRITER, "Timeout"))) or 3.0
    visibility = as_number(resolve(t, q.get("VisibilityTimeout"))) or 30.0
    if visibility < 6 * timeout:
        problems.append(
            f"queue VisibilityTimeout {visibility:g}s is below 6x the writer Timeout {timeout:g}s"
        )

    redrive = q.get("RedrivePolicy") or {}
    receives = redrive.get("maxReceiveCount")
    param = parameter(t, receives)
    low = as_number(param.get("MinValue")) if param else as_number(receives)
    if as_number(resolve(t, receives)) is None or (as_number(resolve(t, receives)) or 0) < 5:
        problems.append("maxReceiveCount is not at least 5")
    elif low is None or low < 5:
        problems.append("maxReceiveCount's parameter allows values below 5 (MinValue)")

    dlq = ref_target(redrive.get("deadLetterTargetArn"))
    if dlq is None or dlq not in resources(t, "AWS::SQS::Queue"):
        return [*problems, "command queue has no RedrivePolicy to a DLQ in the template"]
    problems += _queue_problems(t, dlq, "DLQ")
    allow = props(t, dlq).get("RedriveAllowPolicy") or {}
    sources = as_list(allow.get("sourceQueueArns"))
    queue_name = q.get("QueueName", {})
    queue_name = queue_name.get("Fn::Sub") if isinstance(queue_name, dict) else queue_name
    if allow.get("redrivePermission") != "byQueue" or len(sources) != 1:
        problems.append("DLQ RedriveAllowPolicy does not name exactly one source queue (byQueue)")
    else:
        source = sources[0]
        text = source.get("Fn::Sub") if isinstance(source, dict) else source
        names_queue = ref_target(source) == queue or (
            isinstance(text, str)
            and isinstance(queue_name, str)
            and text.endswith(":" + queue_name)
        )
        if not names_queue:
            problems.append("DLQ RedriveAllowPolicy does not name the command queue")

    paths = mount_paths(t, WRITER)
    if not paths:
        problems.append("writer has no EFS FileSystemConfigs")
    for path in paths:
        if not MOUNT_PATH_RE.fullmatch(path):
            problems.append(
                f"writer LocalMountPath {path!r} does not match {MOUNT_PATH_RE.pattern}"
            )
    return problems


def reader_write_problems(t: Template) -> list[str]:
    """The reader must be read-only at the NFS level: no ClientWrite for its role, anywhere."""
    problems: list[str] = []
    p = props(t, READER)
    if not p:
        return [f"no {READER} resource"]
    if p.get("Policies"):
        problems.append("reader has SAM Policies (its role must be the explicit one)")
    role = role_of(t, READER)
    if role is None or role not in resources(t, "AWS::IAM::Role"):
        return [*problems, "reader Role is not a role defined in the template"]
    for source, statement in role_statements(t, role):
        if grants(statement, CLIENT_WRITE):
            problems.append(f"reader role {role} gets {CLIENT_WRITE} from {source}")
    for name in aws_managed_policies(t, role):
        if name != VPC_EXECUTION_POLICY:
            problems.append(f"reader role {role} has AWS managed policy {name} (may grant writes)")
    for fs, statement in file_system_statements(t):
        for principal in principals(statement):
            if (principal == "*" or ref_target(principal) == role) and grants(
                statement, CLIENT_WRITE
            ):
                problems.append(f"{fs} file system policy grants {CLIENT_WRITE} to the reader")
    for path in mount_paths(t, READER):
        if not MOUNT_PATH_RE.fullmatch(path):
            problems.append(
                f"reader LocalMountPath {path!r} does not match {MOUNT_PATH_RE.pattern}"
            )
    return problems


def writer_role_problems(t: Template) -> list[str]:
    """The writer consumes its queue, mounts and writes EFS, and nothing else."""
    role = role_of(t, WRITER)
    if role is None or role not in resources(t, "AWS::IAM::Role"):
        return ["writer Role is not a role defined in the template"]
    problems = []
    for source, statement in role_statements(t, role):
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            problems.append(f"writer role statement in {source} uses NotAction")
        for action in as_list(statement.get("Action")):
            if str(action).lower() not in WRITER_ACTIONS:
                problems.append(f"writer role may {action} (from {source})")
    for name in aws_managed_policies(t, role):
        if name != VPC_EXECUTION_POLICY:
            problems.append(f"writer role has AWS managed policy {name}")
    return problems


def network_problems(t: Template) -> list[str]:
    """No fixed-cost networking, and NFS 2049 only between the two security groups."""
    problems = []
    for costly in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EIP"):
        problems += [f"{k} is a {costly}" for k in resources(t, costly)]
    for k, r in resources(t, "AWS::EC2::VPCEndpoint").items():
        if (r.get("Properties") or {}).get("VpcEndpointType", "Gateway") != "Gateway":
            problems.append(f"{k} is an interface VPC endpoint (about $7/month per AZ)")
    groups = resources(t, "AWS::EC2::SecurityGroup")
    rules: list[tuple[str, dict[str, Any]]] = []
    for k in groups:
        rules += [(k, r) for r in as_list(props(t, k).get("SecurityGroupIngress"))]
    for k in resources(t, "AWS::EC2::SecurityGroupIngress"):
        rules.append((k, props(t, k)))
    if not rules:
        problems.append("no NFS ingress rule for the mount targets")
    for k, rule in rules:
        source = ref_target(rule.get("SourceSecurityGroupId"))
        port_ok = str(rule.get("FromPort")) == "2049" and str(rule.get("ToPort")) == "2049"
        if rule.get("IpProtocol") != "tcp" or not port_ok or source not in groups:
            problems.append(f"{k}: ingress other than tcp 2049 from a template security group")
    return problems


def efs_problems(t: Template) -> list[str]:
    problems = []
    systems = resources(t, "AWS::EFS::FileSystem")
    if len(systems) != 1:
        return [f"{len(systems)} EFS file systems, expected 1"]
    fs = next(iter(systems))
    p = props(t, fs)
    if systems[fs].get("DeletionPolicy") != "Retain":
        problems.append("EFS file system is not retained when the stack is deleted")
    if p.get("Encrypted") is not True:
        problems.append("EFS is not encrypted")
    if p.get("PerformanceMode", "generalPurpose") != "generalPurpose":
        problems.append("EFS is not General Purpose")
    problems.extend(backup_problems(t, fs))
    statements_ = [s for _, s in file_system_statements(t)]
    deny_tls = any(
        s.get("Effect") == "Deny"
        and principals(s) == ["*"]
        and (s.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in statements_
    )
    if not deny_tls:
        problems.append("EFS file system policy does not deny non-TLS access")
    writer_role = role_of(t, WRITER)
    for s in statements_:
        if grants(s, CLIENT_WRITE) and any(ref_target(x) != writer_role for x in principals(s)):
            problems.append(
                "EFS file system policy grants ClientWrite to someone else than the writer"
            )
    points = resources(t, "AWS::EFS::AccessPoint")
    if not points:
        problems.append("no EFS access point")
    for k in points:
        ap = props(t, k)
        root = ap.get("RootDirectory") or {}
        if not (ap.get("PosixUser") or {}).get("Uid"):
            problems.append(f"{k} has no POSIX user")
        if root.get("Path", "/") in ("/", ""):
            problems.append(f"{k} root directory is /")
        if not root.get("CreationInfo"):
            problems.append(f"{k} has no CreationInfo")
    return problems


def checkov_skip_problems(t: Template) -> list[str]:
    """Every checkov skip carries a written reason in the resource's Metadata."""
    problems = []
    for k, r in resources(t).items():
        skips = ((r.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
        for skip in skips:
            if not str(skip.get("id", "")).startswith("CKV"):
                problems.append(f"{k}: checkov skip without a check id")
            if len(str(skip.get("comment") or "").split()) < 8:
                problems.append(f"{k}: checkov skip {skip.get('id')} has no written reason")
    return problems


def backup_problems(t: Template, fs: str) -> list[str]:
    """The file system is backed up daily by a plan of the stack's, kept a parameter's days."""
    selected = [
        props(t, name)["BackupSelection"]
        for name in resources(t, "AWS::Backup::BackupSelection")
        if {"Fn::GetAtt": [fs, "Arn"]}
        in as_list(props(t, name)["BackupSelection"].get("Resources"))
    ]
    if not selected:
        return ["no backup selection names the EFS file system"]
    plans = resources(t, "AWS::Backup::BackupPlan")
    rules = [
        rule
        for plan in plans.values()
        for rule in as_list(plan["Properties"]["BackupPlan"].get("BackupPlanRule"))
    ]
    problems = []
    if not any("cron(" in str(rule.get("ScheduleExpression")) for rule in rules):
        problems.append("no backup rule runs on a schedule")
    retention = [parameter(t, (r.get("Lifecycle") or {}).get("DeleteAfterDays")) for r in rules]
    if not any(param and as_number(param.get("Default")) for param in retention):
        problems.append("backup retention is not a parameter with a default above 0")
    if (props(t, fs).get("BackupPolicy") or {}).get("Status") == "ENABLED":
        problems.append("AWS's automatic EFS backups (35 days) run beside the stack's plan")
    return problems
