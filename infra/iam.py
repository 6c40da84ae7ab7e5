"""Least-privilege IAM, derived from the topology's ``Resource`` values.

Each function gets one role whose inline policy is :func:`function_policy`: for every resource
the function reads or writes, only the actions that access needs, on only that resource's ARN
(S3 down to the key pattern; the database down to the application role). ``Resource: "*"``
appears only where AWS offers nothing narrower:
X-Ray segments and the VPC network-interface actions Lambda performs for a function in a VPC.
Plain functions over plain strings: tests call them without the Pulumi engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.topology import (
    DATABASE_APP_ROLE,
    DERIVED_KEY_PATTERN,
    ORIGINAL_KEY_PATTERN,
    USERS_PREFIX,
    Function,
    Http,
    Resource,
    uses_database,
)

PolicyDocument = dict[str, Any]

# Actions AWS only authorizes on "*" (no resource-level permissions).
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
WILDCARD_RESOURCE_ACTIONS = frozenset(XRAY_ACTIONS + VPC_ACTIONS)


@dataclass(frozen=True)
class AccessTargets:
    """The ARNs a function's resources resolve to (plain strings, resolved from outputs)."""

    bucket_arn: str
    db_secret_arn: str
    # arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/ (the role name is appended)
    db_user_arn_prefix: str
    event_bus_arn: str
    idempotency_table_arn: str
    anthropic_param_arn: str
    voyage_param_arn: str
    conversations_table_arn: str
    cursor_param_arn: str
    # Set only when the stack configures a Tavily key: no key, no parameter, no permission.
    tavily_param_arn: str | None = None
    # The dead-letter queues of the event-triggered functions (what the consumer reads).
    dead_letter_queue_arns: tuple[str, ...] = ()


def assume_role_policy() -> PolicyDocument:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def _allow(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources,
    }
    statement.update(extra)
    return statement


def _object_arn(bucket_arn: str, key_pattern: str) -> str:
    return f"{bucket_arn}/{key_pattern}"


def resource_statements(fn: Function, t: AccessTargets) -> list[dict[str, Any]]:
    """The statements for the resources ``fn`` declares (reads and writes), nothing else."""
    reads, writes = fn.reads, fn.writes
    out: list[dict[str, Any]] = []
    if Resource.DATABASE_ADMIN in fn.resources:
        # The migrator: password auth with the RDS-managed master secret, read at run time.
        out.append(_allow("DatabaseSecret", ["secretsmanager:GetSecretValue"], [t.db_secret_arn]))
    elif Resource.DATABASE in fn.resources:
        # IAM database authentication as the application role, and as no other database user.
        out.append(
            _allow(
                "DatabaseConnect",
                ["rds-db:connect"],
                [f"{t.db_user_arn_prefix}{DATABASE_APP_ROLE}"],
            )
        )
    for resource, sid, pattern in (
        (Resource.ORIGINALS, "Originals", ORIGINAL_KEY_PATTERN),
        (Resource.DERIVED, "Derived", DERIVED_KEY_PATTERN),
        (Resource.USER_OBJECTS, "UserObjects", f"{USERS_PREFIX}*"),
    ):
        arn = _object_arn(t.bucket_arn, pattern)
        if resource in reads:
            out.append(_allow(f"Read{sid}", ["s3:GetObject"], [arn]))
        if resource in writes:
            actions = ["s3:PutObject"]
            if resource is Resource.USER_OBJECTS:
                actions.append("s3:DeleteObject")
            out.append(_allow(f"Write{sid}", actions, [arn]))
    if Resource.USER_OBJECTS in reads:
        out.append(
            _allow(
                "ListUserObjects",
                ["s3:ListBucket"],
                [t.bucket_arn],
                Condition={"StringLike": {"s3:prefix": [USERS_PREFIX, f"{USERS_PREFIX}*"]}},
            )
        )
    if Resource.EVENTS in writes:
        out.append(_allow("PublishEvents", ["events:PutEvents"], [t.event_bus_arn]))
    for resource, sid, arn in (
        (Resource.ANTHROPIC_KEY, "ReadAnthropicKey", t.anthropic_param_arn),
        (Resource.VOYAGE_KEY, "ReadVoyageKey", t.voyage_param_arn),
        (Resource.CURSOR_KEY, "ReadCursorKey", t.cursor_param_arn),
    ):
        if resource in fn.resources:
            out.append(_allow(sid, ["ssm:GetParameter"], [arn]))
    if Resource.TAVILY_KEY in fn.resources and t.tavily_param_arn:
        out.append(_allow("ReadTavilyKey", ["ssm:GetParameter"], [t.tavily_param_arn]))
    if Resource.CONVERSATIONS in reads:
        out.append(
            _allow(
                "ReadConversations",
                ["dynamodb:GetItem", "dynamodb:Query"],
                [t.conversations_table_arn],
            )
        )
    if Resource.CONVERSATIONS in writes:
        # Transactions (TransactWriteItems) are authorized as their PutItem/UpdateItem parts.
        actions = ["dynamodb:UpdateItem"]
        if Resource.CONVERSATIONS in reads and _creates_conversations(fn):
            actions += ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]
        out.append(_allow("WriteConversations", actions, [t.conversations_table_arn]))
    if Resource.DEAD_LETTERS in reads:
        # What an SQS event source mapping needs of its function's role to poll the queues.
        out.append(
            _allow(
                "ReadDeadLetters",
                ["sqs:ReceiveMessage", "sqs:GetQueueAttributes"],
                list(t.dead_letter_queue_arns),
            )
        )
    if Resource.DEAD_LETTERS in writes:
        out.append(
            _allow(
                "SettleDeadLetters",
                ["sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
                list(t.dead_letter_queue_arns),
            )
        )
    if Resource.IDEMPOTENCY in reads:
        out.append(_allow("ReadIdempotency", ["dynamodb:GetItem"], [t.idempotency_table_arn]))
    if Resource.IDEMPOTENCY in writes:
        out.append(
            _allow(
                "WriteIdempotency",
                ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                [t.idempotency_table_arn],
            )
        )
    return out


def _creates_conversations(fn: Function) -> bool:
    """The API creates and deletes conversations; the assistant only updates messages."""
    return isinstance(fn.trigger, Http)


def needs_vpc(fn: Function) -> bool:
    """A function that talks to the database runs in the VPC's private subnets."""
    return uses_database(fn)


def function_policy(
    fn: Function,
    targets: AccessTargets,
    *,
    log_group_arn: str,
    dead_letter_queue_arn: str | None,
) -> PolicyDocument:
    """The whole inline policy of ``fn``'s role."""
    statements = [
        _allow("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"]),
        _allow("Tracing", list(XRAY_ACTIONS), ["*"]),
    ]
    if needs_vpc(fn):
        statements.append(_allow("VpcNetworkInterfaces", list(VPC_ACTIONS), ["*"]))
    if dead_letter_queue_arn is not None:
        # Lambda's on-failure destination sends with the function's own role.
        statements.append(
            _allow("OnFailureDestination", ["sqs:SendMessage"], [dead_letter_queue_arn])
        )
    statements.extend(resource_statements(fn, targets))
    return {"Version": "2012-10-17", "Statement": statements}
