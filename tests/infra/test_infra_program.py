"""The real program (infra/) under Pulumi mocks: what it registers, and how it is wired.

Most tests use the ``deployment`` fixture, i.e. they run against both the preview and the
update run of the dev stack. Inputs are checked as the engine receives them (camelCase keys).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from infra_harness import (
    ACCOUNT,
    FAKE_ECR_PASSWORD,
    FAKE_SECRETS,
    REPO_ROOT,
    Deployment,
    Res,
    as_json,
    is_secret_value,
    run_program,
    stack_config_with_secrets,
    unwrap,
)

from infra import MIGRATIONS_DIR
from infra.build import migrations_hash
from infra.components.secrets import GENERATED
from infra.environment import EVENT_SOURCE
from runtime.config import Settings
from runtime.topology import (
    DATABASE_APP_ROLE,
    FUNCTIONS,
    ORIGINAL_KEY_PATTERN,
    DeadLetters,
    Deploy,
    Function,
    Http,
    ObjectCreated,
    OnEvent,
    Resource,
    Schedule,
    dead_letter_consumer,
    event_functions,
    function,
    images,
    uses_database,
)

LAMBDA = "aws:lambda/function:Function"
IMAGE = "docker-build:index:Image"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
PERMISSION = "aws:lambda/permission:Permission"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
INVOCATION = "aws:lambda/invocation:Invocation"
RDS = "aws:rds/instance:Instance"
PARAMETER = "aws:ssm/parameter:Parameter"
DIGEST_URI = re.compile(
    rf"^{ACCOUNT}\.dkr\.ecr\.us-east-1\.amazonaws\.com/[a-z0-9._/-]+@sha256:[0-9a-f]{{64}}$"
)
ENI_AND_XRAY = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


# ------------------------------------------------------------------ lookups


def lambda_of(d: Deployment, fn: Function) -> Res:
    return d.one(LAMBDA, f"functions-{fn.name}")


def function_arn(r: Res) -> str:
    return r.state["arn"]


def function_name(r: Res) -> str:
    return r.state["name"]


def role_of(d: Deployment, fn_res: Res) -> Res:
    roles = [r for r in d.of_type(ROLE) if r.state["arn"] == fn_res.inputs["role"]]
    assert len(roles) == 1
    return roles[0]


def policy_of(d: Deployment, role: Res) -> dict[str, Any]:
    policies = [p for p in d.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]
    assert len(policies) == 1, "exactly one inline policy per role"
    return as_json(policies[0].inputs["policy"])


def rds(d: Deployment) -> Res:
    (instance,) = d.of_type(RDS)
    return instance


def bucket(d: Deployment) -> Res:
    (b,) = d.of_type("aws:s3/bucket:Bucket")
    return b


def bus(d: Deployment) -> Res:
    (b,) = d.of_type("aws:cloudwatch/eventBus:EventBus")
    return b


def queue_by_arn(d: Deployment, arn: str) -> Res:
    (q,) = [q for q in d.of_type(QUEUE) if q.state["arn"] == arn]
    return q


def rule_by_name(d: Deployment, name: str) -> Res:
    (r,) = [r for r in d.of_type(RULE) if r.state["name"] == name]
    return r


def targets_of(d: Deployment, fn_res: Res) -> list[Res]:
    return [t for t in d.of_type(TARGET) if t.inputs["arn"] == function_arn(fn_res)]


def permissions_of(d: Deployment, fn_res: Res) -> list[Res]:
    return [p for p in d.of_type(PERMISSION) if p.inputs["function"] == function_name(fn_res)]


def secret_arn(d: Deployment) -> str:
    return rds(d).state["masterUserSecrets"][0]["secretArn"]


def parameter(d: Deployment, key: str) -> Res:
    (p,) = [p for p in d.of_type(PARAMETER) if p.inputs["name"].endswith(f"/{key}")]
    return p


# ------------------------------------------------------------------ functions


def test_one_lambda_per_topology_entry_and_no_other(deployment: Deployment) -> None:
    names = sorted(r.name for r in deployment.of_type(LAMBDA))
    assert names == sorted(f"functions-{fn.name}" for fn in FUNCTIONS)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_lambda_runs_the_image_by_digest_with_its_handler(
    deployment: Deployment, fn: Function
) -> None:
    r = lambda_of(deployment, fn)
    i = r.inputs
    assert i["packageType"] == "Image"
    assert DIGEST_URI.match(i["imageUri"]), i["imageUri"]
    assert i["imageUri"] == deployment.outputs["imageUris"][fn.image]  # its own image
    assert i["imageUri"].endswith("@" + deployment.outputs["imageDigests"][fn.image])
    assert "name" not in i, "functions must be auto-named (create-before-delete on replace)"
    assert i["architectures"] == ["arm64"]
    assert i["imageConfig"] == {"commands": [fn.handler]}
    assert i["memorySize"] == fn.memory_mb
    assert i["timeout"] == fn.timeout_s
    assert i["tracingConfig"] == {"mode": "Active"}
    assert "handler" not in i and "runtime" not in i
    if uses_database(fn):
        (vpc,) = deployment.of_type("awsx:ec2:Vpc")
        assert i["vpcConfig"]["subnetIds"] == vpc.state["privateSubnetIds"]
        (sg,) = [
            s
            for s in deployment.of_type("aws:ec2/securityGroup:SecurityGroup")
            if s.name == "network-functions-sg"
        ]
        assert i["vpcConfig"]["securityGroupIds"] == [sg.id]


def test_alarm_email_subscribes_to_the_alarm_topic(dev_x86: Deployment) -> None:
    (topic,) = dev_x86.of_type("aws:sns/topic:Topic")
    (sub,) = dev_x86.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sub.inputs == {
        "topic": topic.state["arn"],
        "protocol": "email",
        "endpoint": "ops@example.com",
    }


def test_architecture_comes_from_the_stack_config(dev_x86: Deployment) -> None:
    for r in dev_x86.of_type(LAMBDA):
        assert r.inputs["architectures"] == ["x86_64"]
    built = dev_x86.of_type(IMAGE)
    assert len(built) == len(images())
    for image in built:
        assert image.inputs["platforms"] == ["linux/amd64"]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_log_group_is_explicit_with_retention(deployment: Deployment, fn: Function) -> None:
    r = lambda_of(deployment, fn)
    assert r.inputs["loggingConfig"]["logFormat"] == "JSON"
    groups = [
        g
        for g in deployment.of_type(LOG_GROUP)
        if g.state["name"] == r.inputs["loggingConfig"]["logGroup"]
    ]
    assert len(groups) == 1
    assert groups[0].inputs["retentionInDays"] == 14
    assert groups[0].inputs["namePrefix"] == f"/collections/dev/{fn.name}-"


@pytest.mark.parametrize("fn", event_functions(), ids=lambda f: f.name)
def test_async_functions_retry_then_fail_to_their_encrypted_dlq(
    deployment: Deployment, fn: Function
) -> None:
    r = lambda_of(deployment, fn)
    (config,) = [
        c
        for c in deployment.of_type(
            "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
        )
        if c.inputs["functionName"] == function_name(r)
    ]
    assert config.inputs["maximumRetryAttempts"] == fn.retry.maximum_retry_attempts
    assert config.inputs["maximumEventAgeInSeconds"] == fn.retry.maximum_event_age_seconds
    dlq = queue_by_arn(deployment, config.inputs["destinationConfig"]["onFailure"]["destination"])
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600


# ------------------------------------------------------------------ topology walk


def assert_wired(d: Deployment, fn: Function) -> None:
    """Lambda, role, log group, trigger and permission for one topology entry."""
    r = lambda_of(d, fn)
    role = role_of(d, r)
    assert as_json(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }
    policy_of(d, role)
    log_group = r.inputs["loggingConfig"]["logGroup"]
    assert [g for g in d.of_type(LOG_GROUP) if g.state["name"] == log_group]

    trigger = fn.trigger
    permissions = permissions_of(d, r)
    if isinstance(trigger, Http):
        (integration,) = [
            i
            for i in d.of_type("aws:apigatewayv2/integration:Integration")
            if i.inputs["integrationUri"] == function_arn(r)
        ]
        routes = [
            x
            for x in d.of_type("aws:apigatewayv2/route:Route")
            if x.inputs["target"] == f"integrations/{integration.id}"
        ]
        assert {x.inputs["routeKey"] for x in routes} == {"ANY /{proxy+}", *trigger.public_routes}
        (api,) = d.of_type("aws:apigatewayv2/api:Api")
        assert [p.inputs["principal"] for p in permissions] == ["apigateway.amazonaws.com"]
        assert permissions[0].inputs["sourceArn"] == f"{api.state['executionArn']}/*/*"
    elif isinstance(trigger, ObjectCreated | OnEvent | Schedule):
        (target,) = targets_of(d, r)
        rule = rule_by_name(d, target.inputs["rule"])
        assert [p.inputs["principal"] for p in permissions] == ["events.amazonaws.com"]
        assert permissions[0].inputs["sourceArn"] == rule.state["arn"]
        assert permissions[0].inputs["action"] == "lambda:InvokeFunction"
    elif isinstance(trigger, DeadLetters):
        # Polled by SQS event source mappings (they use the function's role, not a resource
        # policy): one per dead-letter queue.
        assert permissions == []
        assert {m.inputs["eventSourceArn"] for m in mappings_to(d, r)} == {
            q.state["arn"] for q in d.of_type(QUEUE)
        }
    elif isinstance(trigger, Deploy):
        # Invoked by `pulumi up` with the deployer's credentials: no resource policy at all.
        invocations = [
            i for i in d.of_type(INVOCATION) if i.inputs["functionName"] == function_name(r)
        ]
        assert len(invocations) == 1
        assert permissions == []
    else:  # pragma: no cover - a new trigger kind needs its wiring and this check
        pytest.fail(f"{fn.name}: no wiring known for trigger {type(trigger).__name__}")


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_each_topology_function_has_lambda_role_logs_trigger_and_permission(
    deployment: Deployment, fn: Function
) -> None:
    assert_wired(deployment, fn)


def test_a_new_topology_entry_gets_its_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    """The program is generated from the declaration: a new entry is wired with no infra edit."""
    import runtime.topology as topology

    extra = Function(
        name="notify",
        handler="runtime.handlers.notify.handler",
        trigger=OnEvent(detail_types=(topology.EventType.ITEM_INDEXED,)),
        memory_mb=256,
        timeout_s=30,
        reads=frozenset({Resource.DATABASE}),
    )
    monkeypatch.setattr(topology, "FUNCTIONS", (*topology.FUNCTIONS, extra))
    d = run_program(
        stack_config_with_secrets("dev"),
        preview=True,
        stack="dev",
        secret_keys=list(FAKE_SECRETS),
        label="extra",
    )
    assert_wired(d, extra)
    assert len(d.of_type(LAMBDA)) == len(FUNCTIONS) + 1
    (target,) = targets_of(d, lambda_of(d, extra))
    assert (
        target.inputs["deadLetterConfig"]["arn"]
        == queue_by_arn(d, target.inputs["deadLetterConfig"]["arn"]).state["arn"]
    )


def mappings_to(d: Deployment, fn_res: Res) -> list[Res]:
    return [
        m
        for m in d.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
        if m.inputs["functionName"] == function_arn(fn_res)
    ]


def test_every_dead_letter_queue_is_consumed_by_the_dead_letter_function(
    deployment: Deployment,
) -> None:
    """An event that exhausts its retries, for every event-triggered function, reaches the
    consumer that fails its item: through an SQS event source with per-record failures, from a
    queue whose visibility covers the consumer's timeout, with a role that may read it."""
    consumer = dead_letter_consumer()
    consumer_res = lambda_of(deployment, consumer)
    mappings = mappings_to(deployment, consumer_res)
    assert len(mappings) == len(event_functions())
    for fn in event_functions():
        (config,) = [
            c
            for c in deployment.of_type(
                "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
            )
            if c.inputs["functionName"] == function_name(lambda_of(deployment, fn))
        ]
        dlq_arn = config.inputs["destinationConfig"]["onFailure"]["destination"]
        (target,) = targets_of(deployment, lambda_of(deployment, fn))
        assert target.inputs["deadLetterConfig"]["arn"] == dlq_arn  # both paths, one queue
        (mapping,) = [m for m in mappings if m.inputs["eventSourceArn"] == dlq_arn]
        assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
        # dead letters stay visible for minutes, so the depth alarm sees each one
        assert mapping.inputs["maximumBatchingWindowInSeconds"] == 300
        assert mapping.inputs["batchSize"] >= 10
        queue = queue_by_arn(deployment, dlq_arn)
        assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * consumer.timeout_s + 300
    doc = policy_of(deployment, role_of(deployment, consumer_res))
    granted = {
        (action, resource)
        for s in doc["Statement"]
        for action in s["Action"]
        for resource in s["Resource"]
        if action.startswith("sqs:")
    }
    dlq_arns = {q.state["arn"] for q in deployment.of_type(QUEUE)}
    for action in (
        "sqs:ReceiveMessage",
        "sqs:GetQueueAttributes",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
    ):
        assert {r for a, r in granted if a == action} == dlq_arns, action
    assert consumer not in event_functions()  # its own failures stay in the queues (retried)


# ------------------------------------------------------------------ IAM


def allowed_actions(fn: Function) -> set[str]:
    """The allow-list: what each declared access may do (independent of infra/iam.py)."""
    allowed = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
    if uses_database(fn):
        allowed |= ENI_AND_XRAY
    if Resource.DATABASE_ADMIN in fn.resources:
        allowed.add("secretsmanager:GetSecretValue")
    elif Resource.DATABASE in fn.resources:
        allowed.add("rds-db:connect")
    if fn in event_functions():
        allowed.add("sqs:SendMessage")
    if Resource.DEAD_LETTERS in fn.reads:
        allowed |= {"sqs:ReceiveMessage", "sqs:GetQueueAttributes"}
    if Resource.DEAD_LETTERS in fn.writes:
        allowed |= {"sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
    per_read = {
        Resource.ORIGINALS: {"s3:GetObject"},
        Resource.DERIVED: {"s3:GetObject"},
        Resource.USER_OBJECTS: {"s3:GetObject", "s3:ListBucket"},
        Resource.ANTHROPIC_KEY: {"ssm:GetParameter"},
        Resource.VOYAGE_KEY: {"ssm:GetParameter"},
        Resource.IDEMPOTENCY: {"dynamodb:GetItem"},
    }
    per_write = {
        Resource.ORIGINALS: {"s3:PutObject"},
        Resource.DERIVED: {"s3:PutObject"},
        Resource.USER_OBJECTS: {"s3:PutObject", "s3:DeleteObject"},
        Resource.EVENTS: {"events:PutEvents"},
        Resource.IDEMPOTENCY: {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    }
    per_read[Resource.CONVERSATIONS] = {"dynamodb:GetItem", "dynamodb:Query"}
    # The API creates and deletes conversations; the assistant only updates its messages.
    per_write[Resource.CONVERSATIONS] = (
        {
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        }
        if isinstance(fn.trigger, Http)
        else {"dynamodb:UpdateItem"}
    )
    for res in fn.reads:
        allowed |= per_read.get(res, set())
    for res in fn.writes:
        allowed |= per_write.get(res, set())
    return allowed


KEY_PATTERNS = {
    ORIGINAL_KEY_PATTERN: Resource.ORIGINALS,
    "users/*/items/*/derived/*": Resource.DERIVED,
    "users/*": Resource.USER_OBJECTS,
}


def check_statement(d: Deployment, fn: Function, fn_res: Res, s: dict[str, Any]) -> None:
    assert s["Effect"] == "Allow"
    assert "NotAction" not in s and "NotResource" not in s and "Principal" not in s
    actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
    resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
    for action in actions:
        assert "*" not in action, f"{fn.name}: wildcard action {action}"
    if "*" in resources:
        assert resources == ["*"] and set(actions) <= ENI_AND_XRAY, (fn.name, s)
        return
    bucket_arn = bucket(d).state["arn"]
    for action in actions:
        service = action.split(":")[0]
        for resource in resources:
            if action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
                assert resource.startswith(bucket_arn + "/")
                declared = KEY_PATTERNS[resource.removeprefix(bucket_arn + "/")]
                mode = fn.reads if action == "s3:GetObject" else fn.writes
                assert declared in mode, (fn.name, action, resource)
                if action == "s3:DeleteObject":
                    assert declared is Resource.USER_OBJECTS
            elif action == "s3:ListBucket":
                assert resource == bucket_arn
                assert s["Condition"] == {"StringLike": {"s3:prefix": ["users/", "users/*"]}}
            elif service == "secretsmanager":
                assert resource == secret_arn(d)
            elif service == "rds-db":
                db = rds(d).state
                assert resource == (
                    f"arn:aws:rds-db:us-east-1:{ACCOUNT}:dbuser:{db['resourceId']}/"
                    f"{DATABASE_APP_ROLE}"
                )
            elif service == "ssm":
                key = {
                    Resource.ANTHROPIC_KEY: "anthropicApiKey",
                    Resource.VOYAGE_KEY: "voyageApiKey",
                    Resource.CURSOR_KEY: "cursorKey",
                }
                allowed = {parameter(d, key[r]).state["arn"] for r in fn.resources if r in key}
                assert resource in allowed, (fn.name, resource)
            elif service == "events":
                assert resource == bus(d).state["arn"]
            elif service == "dynamodb":
                tables = {
                    Resource.IDEMPOTENCY: table(d, "storage-idempotency"),
                    Resource.CONVERSATIONS: table(d, "storage-conversations"),
                }
                allowed = {tables[r].state["arn"] for r in fn.resources if r in tables}
                assert resource in allowed, (fn.name, action, resource)
            elif action == "sqs:SendMessage":
                (target,) = targets_of(d, fn_res)
                assert resource == target.inputs["deadLetterConfig"]["arn"]
            elif service == "sqs":
                # the consumer's: exactly the dead-letter queues, each once
                assert Resource.DEAD_LETTERS in fn.resources, (fn.name, action)
                assert sorted(resources) == sorted(q.state["arn"] for q in d.of_type(QUEUE))
            elif service == "logs":
                log_group = fn_res.inputs["loggingConfig"]["logGroup"]
                (g,) = [g for g in d.of_type(LOG_GROUP) if g.state["name"] == log_group]
                assert resource == g.state["arn"] + ":*"
            else:
                pytest.fail(f"{fn.name}: unexpected action {action}")


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.name)
def test_role_policy_is_within_the_functions_allow_list(
    deployment: Deployment, fn: Function
) -> None:
    r = lambda_of(deployment, fn)
    doc = policy_of(deployment, role_of(deployment, r))
    assert doc["Version"] == "2012-10-17"
    actions: set[str] = set()
    for s in doc["Statement"]:
        check_statement(deployment, fn, r, s)
        actions |= set(s["Action"])
    assert actions <= allowed_actions(fn), actions - allowed_actions(fn)
    assert actions == allowed_actions(fn), "a declared access lacks its permission"


def test_thumbnailer_touches_originals_and_derivatives_only(deployment: Deployment) -> None:
    fn = function("thumbnail")
    doc = policy_of(deployment, role_of(deployment, lambda_of(deployment, fn)))
    b = bucket(deployment).state["arn"]
    s3 = {
        (a, res)
        for s in doc["Statement"]
        for a in s["Action"]
        if a.startswith("s3:")
        for res in s["Resource"]
    }
    assert s3 == {
        ("s3:GetObject", f"{b}/users/*/items/*/original"),
        ("s3:PutObject", f"{b}/users/*/items/*/derived/*"),
    }


def test_no_managed_policies_anywhere(deployment: Deployment) -> None:
    assert not deployment.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert not deployment.of_type("aws:iam/policy:Policy")
    for role in deployment.of_type(ROLE):
        assert "managedPolicyArns" not in role.inputs
        assert "name" not in role.inputs


# ------------------------------------------------------------------ events


def test_every_eventbridge_target_has_retries_and_an_encrypted_dlq(deployment: Deployment) -> None:
    targets = deployment.of_type(TARGET)
    assert len(targets) == len(event_functions())
    for t in targets:
        fn_res = next(r for r in deployment.of_type(LAMBDA) if r.state["arn"] == t.inputs["arn"])
        fn = function(fn_res.name.removeprefix("functions-"))
        assert t.inputs["retryPolicy"] == {
            "maximumRetryAttempts": fn.retry.maximum_retry_attempts,
            "maximumEventAgeInSeconds": fn.retry.maximum_event_age_seconds,
        }
        dlq = queue_by_arn(deployment, t.inputs["deadLetterConfig"]["arn"])
        assert dlq.inputs["sqsManagedSseEnabled"] is True
        rule = rule_by_name(deployment, t.inputs["rule"])
        (qp,) = [
            p for p in deployment.of_type(QUEUE_POLICY) if p.inputs["queueUrl"] == dlq.state["url"]
        ]
        (statement,) = as_json(qp.inputs["policy"])["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == dlq.state["arn"]
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule.state["arn"]}}
        assert t.inputs.get("eventBusName") == rule.inputs.get("eventBusName")


def test_thumbnail_rule_is_on_the_default_bus_for_this_bucket_and_originals(
    deployment: Deployment,
) -> None:
    (target,) = targets_of(deployment, lambda_of(deployment, function("thumbnail")))
    rule = rule_by_name(deployment, target.inputs["rule"])
    assert "eventBusName" not in rule.inputs  # S3 notifications go to the default bus
    assert as_json(rule.inputs["eventPattern"]) == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [bucket(deployment).state["bucket"]]},
            "object": {"key": [{"wildcard": ORIGINAL_KEY_PATTERN}]},
        },
    }
    (notification,) = deployment.of_type("aws:s3/bucketNotification:BucketNotification")
    assert notification.inputs == {"bucket": bucket(deployment).id, "eventbridge": True}


@pytest.mark.parametrize("name", ["analyze", "embed", "assistant"])
def test_pipeline_rules_match_source_and_detail_types_on_the_custom_bus(
    deployment: Deployment, name: str
) -> None:
    fn = function(name)
    assert isinstance(fn.trigger, OnEvent)
    (target,) = targets_of(deployment, lambda_of(deployment, fn))
    rule = rule_by_name(deployment, target.inputs["rule"])
    assert rule.inputs["eventBusName"] == bus(deployment).state["name"]
    assert as_json(rule.inputs["eventPattern"]) == {
        "source": [Settings().event_source],
        "detail-type": [str(t) for t in fn.trigger.detail_types],
    }
    assert Settings().event_source == EVENT_SOURCE


def test_cleanup_runs_on_its_schedule(deployment: Deployment) -> None:
    fn = function("cleanup")
    (target,) = targets_of(deployment, lambda_of(deployment, fn))
    rule = rule_by_name(deployment, target.inputs["rule"])
    assert isinstance(fn.trigger, Schedule)
    assert rule.inputs["scheduleExpression"] == fn.trigger.expression
    assert "eventPattern" not in rule.inputs and "eventBusName" not in rule.inputs


# ------------------------------------------------------------------ migrations


def test_migration_invocation_depends_on_the_database_and_functions_on_it(
    deployment: Deployment,
) -> None:
    (invocation,) = deployment.of_type(INVOCATION)
    database = rds(deployment)
    db_children = {r.urn for r in deployment.resources if r.parent.endswith("::database")}
    assert database.urn in invocation.dependencies
    assert db_children <= invocation.dependencies  # security-group rules, parameter group...
    migrate = lambda_of(deployment, function("migrate"))
    assert invocation.inputs["functionName"] == function_name(migrate)
    assert json.loads(invocation.inputs["input"]) == {"action": "upgrade", "revision": "head"}
    assert invocation.inputs["triggers"] == {
        "migrations": migrations_hash(MIGRATIONS_DIR),
        "database": database.state["address"],
    }
    for fn in FUNCTIONS:
        r = lambda_of(deployment, fn)
        if isinstance(fn.trigger, Deploy):
            assert invocation.urn not in r.dependencies
        else:
            assert invocation.urn in r.dependencies, f"{fn.name} must wait for the migrations"


# ------------------------------------------------------------------ database


def test_database_is_private_encrypted_tls_and_rds_managed_password(deployment: Deployment) -> None:
    i = rds(deployment).inputs
    assert i["publiclyAccessible"] is False
    assert i["storageEncrypted"] is True
    assert i["manageMasterUserPassword"] is True
    assert "password" not in i and "passwordWo" not in i
    assert i["engine"] == "postgres"
    assert int(i["engineVersion"].split(".")[0]) >= 16
    assert i["instanceClass"] == "db.t4g.micro"
    assert i["backupRetentionPeriod"] == 1
    assert i["deletionProtection"] is False
    assert i["multiAz"] is False
    (pg,) = deployment.of_type("aws:rds/parameterGroup:ParameterGroup")
    assert i["parameterGroupName"] == pg.state["name"]
    assert pg.inputs["family"] == "postgres17"
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in pg.inputs[
        "parameters"
    ]
    (subnets,) = deployment.of_type("aws:rds/subnetGroup:SubnetGroup")
    (vpc,) = deployment.of_type("awsx:ec2:Vpc")
    assert subnets.inputs["subnetIds"] == vpc.state["isolatedSubnetIds"]
    assert i["dbSubnetGroupName"] == subnets.state["name"]


def test_database_accepts_postgres_from_the_functions_only(deployment: Deployment) -> None:
    sgs = {s.name: s for s in deployment.of_type("aws:ec2/securityGroup:SecurityGroup")}
    db_sg, fn_sg = sgs["database-sg"], sgs["network-functions-sg"]
    assert rds(deployment).inputs["vpcSecurityGroupIds"] == [db_sg.id]
    ingress = deployment.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert [
        (
            r.inputs["securityGroupId"],
            r.inputs["referencedSecurityGroupId"],
            r.inputs["fromPort"],
            r.inputs["toPort"],
        )
        for r in ingress
    ] == [(db_sg.id, fn_sg.id, 5432, 5432)]
    assert all("cidrIpv4" not in r.inputs and "cidrIpv6" not in r.inputs for r in ingress)
    assert not deployment.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")


def test_prod_database_is_multi_az_protected_and_backed_up(prod: Deployment) -> None:
    r = rds(prod)
    assert r.inputs["multiAz"] is True
    assert r.inputs["deletionProtection"] is True
    assert r.inputs["backupRetentionPeriod"] == 14
    assert r.inputs["skipFinalSnapshot"] is False
    assert r.inputs["finalSnapshotIdentifier"] == "collections-prod-final"


# ------------------------------------------------------------------ storage


def test_bucket_blocks_public_access_and_is_encrypted_tls_only(deployment: Deployment) -> None:
    b = bucket(deployment)
    assert "bucket" not in b.inputs and "acl" not in b.inputs and "policy" not in b.inputs
    (pab,) = deployment.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert pab.inputs == {
        "bucket": b.id,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    (sse,) = deployment.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "AES256"
    }
    (own,) = deployment.of_type("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert own.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    (pol,) = deployment.of_type("aws:s3/bucketPolicy:BucketPolicy")
    (deny,) = as_json(pol.inputs["policy"])["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_versioning_lifecycle_and_cors_follow_config(deployment: Deployment) -> None:
    (ver,) = deployment.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert ver.inputs["versioningConfiguration"] == {"status": "Enabled"}
    (lc,) = deployment.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {r["id"]: r for r in lc.inputs["rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 1
    }
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": 7
    }
    (cors,) = deployment.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")
    (api,) = deployment.of_type("aws:apigatewayv2/api:Api")
    # the web app's origin (the API's), then the configured ones
    assert cors.inputs["corsRules"][0]["allowedOrigins"] == [
        api.state["apiEndpoint"],
        "http://localhost:5173",
    ]
    assert "POST" in cors.inputs["corsRules"][0]["allowedMethods"]


def table(d: Deployment, name: str) -> Res:
    return d.one("aws:dynamodb/table:Table", name)


def test_idempotency_table_has_ttl_and_key_id(deployment: Deployment) -> None:
    t = table(deployment, "storage-idempotency")
    assert t.inputs["hashKey"] == "id"
    assert t.inputs["attributes"] == [{"name": "id", "type": "S"}]
    assert t.inputs["ttl"] == {"attributeName": "expiration", "enabled": True}
    assert t.inputs["billingMode"] == "PAY_PER_REQUEST"


# ------------------------------------------------------------------ auth and API


def test_user_pool_and_public_client(deployment: Deployment) -> None:
    (pool,) = deployment.of_type("aws:cognito/userPool:UserPool")
    assert pool.inputs["usernameAttributes"] == ["email"]
    assert pool.inputs["passwordPolicy"]["minimumLength"] == 12
    assert pool.inputs["mfaConfiguration"] == "OPTIONAL"
    assert pool.inputs["softwareTokenMfaConfiguration"] == {"enabled": True}
    assert pool.inputs["adminCreateUserConfig"] == {"allowAdminCreateUserOnly": False}
    assert pool.inputs["deletionProtection"] == "INACTIVE"
    (client,) = deployment.of_type("aws:cognito/userPoolClient:UserPoolClient")
    assert client.inputs["userPoolId"] == pool.id
    assert client.inputs["generateSecret"] is False
    assert set(client.inputs["explicitAuthFlows"]) == {
        "ALLOW_USER_SRP_AUTH",
        "ALLOW_USER_PASSWORD_AUTH",
        "ALLOW_REFRESH_TOKEN_AUTH",
    }
    assert client.inputs["tokenValidityUnits"] == {
        "accessToken": "minutes",
        "idToken": "minutes",
        "refreshToken": "days",
    }


def test_authorizer_issuer_and_audience_are_the_pools(deployment: Deployment) -> None:
    (pool,) = deployment.of_type("aws:cognito/userPool:UserPool")
    (client,) = deployment.of_type("aws:cognito/userPoolClient:UserPoolClient")
    (authorizer,) = deployment.of_type("aws:apigatewayv2/authorizer:Authorizer")
    assert authorizer.inputs["authorizerType"] == "JWT"
    assert authorizer.inputs["identitySources"] == ["$request.header.Authorization"]
    assert authorizer.inputs["jwtConfiguration"] == {
        "issuer": f"https://cognito-idp.us-east-1.amazonaws.com/{pool.id}",
        "audiences": [client.id],
    }
    assert pool.state["endpoint"].endswith(pool.id)


def test_routes_integration_and_stage(deployment: Deployment) -> None:
    (authorizer,) = deployment.of_type("aws:apigatewayv2/authorizer:Authorizer")
    routes = {
        r.inputs["routeKey"]: r.inputs for r in deployment.of_type("aws:apigatewayv2/route:Route")
    }
    assert routes["ANY /{proxy+}"]["authorizationType"] == "JWT"
    assert routes["ANY /{proxy+}"]["authorizerId"] == authorizer.id
    api_fn = function("api")
    assert isinstance(api_fn.trigger, Http)
    for public in api_fn.trigger.public_routes:
        assert routes[public]["authorizationType"] == "NONE"
        assert "authorizerId" not in routes[public]
    assert set(routes) == {
        "ANY /{proxy+}",
        "GET /health",
        "GET /version",
        "GET /openapi.json",
        "GET /docs",
        "GET /docs/static/{proxy+}",
        "GET /",
        "GET /assets/{proxy+}",
        "POST /auth/login",
        "POST /auth/refresh",
        "POST /auth/logout",
    }
    (integration,) = deployment.of_type("aws:apigatewayv2/integration:Integration")
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    (stage,) = deployment.of_type("aws:apigatewayv2/stage:Stage")
    assert stage.inputs["name"] == "$default" and stage.inputs["autoDeploy"] is True
    assert stage.inputs["defaultRouteSettings"] == {
        "throttlingRateLimit": 20,
        "throttlingBurstLimit": 40,
    }
    logs = [
        g
        for g in deployment.of_type(LOG_GROUP)
        if g.state["arn"] == stage.inputs["accessLogSettings"]["destinationArn"]
    ]
    assert len(logs) == 1 and logs[0].inputs["retentionInDays"] == 14
    assert "$context.requestId" in stage.inputs["accessLogSettings"]["format"]


def test_api_function_gets_cognito_ids_from_the_pool(deployment: Deployment) -> None:
    env = lambda_of(deployment, function("api")).inputs["environment"]["variables"]
    (pool,) = deployment.of_type("aws:cognito/userPool:UserPool")
    (client,) = deployment.of_type("aws:cognito/userPoolClient:UserPoolClient")
    assert env["COLLECTIONS_COGNITO_USER_POOL_ID"] == pool.id
    assert env["COLLECTIONS_COGNITO_APP_CLIENT_ID"] == client.id


# ------------------------------------------------------------------ secrets


def test_no_secret_value_outside_the_securestring_parameters(deployment: Deployment) -> None:
    for r in deployment.resources:
        text = json.dumps(unwrap(r.inputs), default=str)
        leaked = [v for v in FAKE_SECRETS.values() if v in text]
        if r.type == PARAMETER:
            assert r.inputs["type"] == "SecureString"
            assert is_secret_value(r.inputs["value"]), "the value must stay a Pulumi secret"
            generated = r.inputs["name"].rsplit("/", 1)[1] in GENERATED
            assert len(leaked) == (0 if generated else 1)
        else:
            assert not leaked, f"secret value in the inputs of {r.type} {r.name}"
    outputs = json.dumps(deployment.outputs, default=str)
    assert not any(v in outputs for v in FAKE_SECRETS.values())
    assert not any(deployment.output_secrets.values())


def test_parameters_use_one_naming_scheme_and_functions_get_names(deployment: Deployment) -> None:
    names = sorted(p.inputs["name"] for p in deployment.of_type(PARAMETER))
    assert names == [
        "/collections/dev/anthropicApiKey",
        "/collections/dev/cursorKey",
        "/collections/dev/voyageApiKey",
    ]
    for fn in FUNCTIONS:
        env = lambda_of(deployment, fn).inputs["environment"]["variables"]
        for key, value in env.items():
            assert not key.endswith("_API_KEY"), key
            if key.endswith("_PARAM"):
                assert value in names
        if Resource.DATABASE_ADMIN in fn.resources:
            assert env["COLLECTIONS_DB_SECRET_ARN"] == secret_arn(deployment)
        elif Resource.DATABASE in fn.resources:
            assert env["COLLECTIONS_DB_USER"] == DATABASE_APP_ROLE
            assert "COLLECTIONS_DB_SECRET_ARN" not in env
        if uses_database(fn):
            assert env["COLLECTIONS_DB_HOST"] == rds(deployment).state["address"]


def test_registry_credentials_stay_secret(deployment: Deployment) -> None:
    for image in deployment.of_type("docker-build:index:Image"):
        assert is_secret_value(image.inputs["registries"])
    for r in deployment.resources:
        if r.type != "docker-build:index:Image":
            assert FAKE_ECR_PASSWORD not in json.dumps(unwrap(r.inputs), default=str)


# ------------------------------------------------------------------ image, network, monitoring


def test_one_image_per_topology_image_with_distinct_digests(deployment: Deployment) -> None:
    built = {r.inputs["buildArgs"]["IMAGE"]: r for r in deployment.of_type(IMAGE)}
    assert sorted(built) == sorted(images())
    assert {fn.image for fn in FUNCTIONS} == set(built)
    digests = deployment.outputs["imageDigests"]
    assert {name: r.state["digest"] for name, r in built.items()} == digests
    assert len(set(digests.values())) == len(digests)  # each image is its own build
    tags = [r.inputs["tags"][0] for r in built.values()]
    assert len(set(tags)) == len(tags)
    caches = {r.inputs["cacheTo"][0]["registry"]["ref"] for r in built.values()}
    assert len(caches) == len(built)  # one registry cache per image


@pytest.mark.parametrize("name", images())
def test_image_is_built_for_the_function_platform_without_attestations(
    deployment: Deployment, name: str
) -> None:
    (image,) = [r for r in deployment.of_type(IMAGE) if r.inputs["buildArgs"]["IMAGE"] == name]
    i = image.inputs
    assert i["platforms"] == ["linux/arm64"]
    assert i["push"] is True
    assert i["exec"] is False  # the embedded builder: no provenance/SBOM, no image index
    assert "exports" not in i
    assert set(i["buildArgs"]) == {"IMAGE", "GIT_SHA", "BUILD_TIME"}
    assert i["tags"][0].endswith(f"-{name}")
    # Paths are relative to the program's working directory (infra/ under `pulumi up`).
    assert (Path.cwd() / i["context"]["location"]).resolve() == REPO_ROOT
    dockerfile = (Path.cwd() / i["dockerfile"]["location"]).resolve()
    assert dockerfile == REPO_ROOT / "images/Dockerfile"
    assert not Path(i["context"]["location"]).is_absolute()
    (cache_to,) = i["cacheTo"]
    assert cache_to["registry"]["mode"] == "max"
    assert cache_to["registry"]["imageManifest"] is True
    assert cache_to["registry"]["ociMediaTypes"] is True
    assert i["cacheFrom"][0]["registry"]["ref"] == cache_to["registry"]["ref"]
    (repo,) = deployment.of_type("aws:ecr/repository:Repository")
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    (lc,) = deployment.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    rules = as_json(lc.inputs["policy"])["rules"]
    assert [r["rulePriority"] for r in rules] == [1, 2, 3]
    assert rules[1]["selection"]["tagPrefixList"] == ["promoted-"]  # never expire promoted ones
    assert rules[0]["selection"]["countNumber"] == len(images())  # each image's cache
    assert rules[2]["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": 10 * len(images()),  # the last 10 builds of each image
    }


def test_network_nat_endpoints_and_subnets(deployment: Deployment, prod: Deployment) -> None:
    (vpc,) = deployment.of_type("awsx:ec2:Vpc")
    assert vpc.inputs["natGateways"] == {"strategy": "Single"}
    assert vpc.inputs["numberOfAvailabilityZones"] == 2
    assert {s["type"] for s in vpc.inputs["subnetSpecs"]} == {"Public", "Private", "Isolated"}
    endpoints = {(e["serviceName"], e["vpcEndpointType"]) for e in vpc.inputs["vpcEndpointSpecs"]}
    assert endpoints == {
        ("com.amazonaws.us-east-1.s3", "Gateway"),
        ("com.amazonaws.us-east-1.dynamodb", "Gateway"),
    }
    (prod_vpc,) = prod.of_type("awsx:ec2:Vpc")
    assert prod_vpc.inputs["natGateways"] == {"strategy": "OnePerAz"}


def test_dashboard_and_alarms(deployment: Deployment) -> None:
    (api,) = deployment.of_type("aws:apigatewayv2/api:Api")
    (dash,) = deployment.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dash.inputs["dashboardName"] == "collections-dev"
    metrics = [
        m
        for w in as_json(dash.inputs["dashboardBody"])["widgets"]
        for m in w["properties"]["metrics"]
    ]
    api_metrics = {m[1] for m in metrics if m[0] == "AWS/ApiGateway"}
    assert {"4xx", "5xx", "Latency"} <= api_metrics
    assert all(m[2:4] == ["ApiId", api.id] for m in metrics if m[0] == "AWS/ApiGateway")
    for r in deployment.of_type(LAMBDA):
        for metric in ("Errors", "Duration", "Throttles"):
            assert ["AWS/Lambda", metric, "FunctionName", function_name(r)] in [
                m[:4] for m in metrics
            ]
    for q in deployment.of_type(QUEUE):
        assert ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q.state["name"]] in [
            m[:4] for m in metrics
        ]
    rds_metrics = {m[1] for m in metrics if m[0] == "AWS/RDS"}
    assert rds_metrics == {"CPUUtilization", "FreeStorageSpace", "DatabaseConnections"}

    (topic,) = deployment.of_type("aws:sns/topic:Topic")
    alarms = deployment.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert all(a.inputs["alarmActions"] == [topic.state["arn"]] for a in alarms)
    dlq_alarms = [a for a in alarms if a.inputs["namespace"] == "AWS/SQS"]
    assert {a.inputs["dimensions"]["QueueName"] for a in dlq_alarms} == {
        q.state["name"] for q in deployment.of_type(QUEUE)
    }
    assert all(
        a.inputs["threshold"] == 0 and a.inputs["comparisonOperator"] == "GreaterThanThreshold"
        for a in dlq_alarms
    )
    errors = {
        a.inputs["dimensions"]["FunctionName"] for a in alarms if a.inputs["metricName"] == "Errors"
    }
    assert errors == {function_name(r) for r in deployment.of_type(LAMBDA)}
    (api5xx,) = [a for a in alarms if a.inputs["metricName"] == "5xx"]
    assert api5xx.inputs["dimensions"] == {"ApiId": api.id}
    assert api5xx.inputs["statistic"] == "Average" and api5xx.inputs["threshold"] == 0.05
    (storage,) = [a for a in alarms if a.inputs["metricName"] == "FreeStorageSpace"]
    assert storage.inputs["dimensions"] == {
        "DBInstanceIdentifier": rds(deployment).state["identifier"]
    }
    assert not deployment.of_type("aws:sns/topicSubscription:TopicSubscription")  # no alarmEmail


# ------------------------------------------------------------------ options, outputs, errors


def test_stateful_resources_are_protected_in_prod_only(
    deployment: Deployment, prod: Deployment
) -> None:
    stateful = {
        RDS,
        "aws:s3/bucket:Bucket",
        "aws:cognito/userPool:UserPool",
        "aws:dynamodb/table:Table",
    }
    assert {r.type for r in prod.resources if r.protect} == stateful
    assert {r.type for r in prod.resources if r.retain_on_delete} == stateful
    assert not [r for r in deployment.resources if r.protect or r.retain_on_delete]
    (pool,) = prod.of_type("aws:cognito/userPool:UserPool")
    assert pool.inputs["deletionProtection"] == "ACTIVE"
    tables = prod.of_type("aws:dynamodb/table:Table")
    assert {t.name for t in tables} == {"storage-idempotency", "storage-conversations"}
    assert all(t.inputs["deletionProtectionEnabled"] is True for t in tables)


def test_fixed_names_delete_before_replace_and_the_rest_does_not(deployment: Deployment) -> None:
    fixed = {r.type for r in deployment.resources if r.delete_before_replace}
    assert fixed == {PARAMETER, "aws:cloudwatch/dashboard:Dashboard"}
    # Everything else has no fixed physical name (the stage name "$default" is per API).
    for r in deployment.resources:
        if r.custom and r.type not in fixed and r.type != "aws:apigatewayv2/stage:Stage":
            assert "name" not in r.inputs, r.type


def test_stack_outputs(deployment: Deployment) -> None:
    out = deployment.outputs
    assert set(out) == {
        "region",
        "apiUrl",
        "webAppUrl",
        "userPoolId",
        "appClientId",
        "bucketName",
        "imageRepositoryUrl",
        "imageDigests",
        "imageUris",
        "imagePlatform",
        "dashboardUrl",
    }
    (api,) = deployment.of_type("aws:apigatewayv2/api:Api")
    assert out["apiUrl"] == api.state["apiEndpoint"]
    assert out["bucketName"] == bucket(deployment).state["bucket"]
    assert set(out["imageDigests"]) == set(images())
    for name, digest in out["imageDigests"].items():
        assert digest.startswith("sha256:")
        assert out["imageUris"][name] == f"{out['imageRepositoryUrl']}@{digest}"
    assert out["imagePlatform"] == "linux/arm64"
    assert out["dashboardUrl"].endswith("#dashboards/dashboard/collections-dev")


def test_an_invalid_stack_fails_with_the_config_error() -> None:
    from infra.config import ConfigError

    config = stack_config_with_secrets("dev") | {"collections:architecture": "amd64"}
    del config["collections:voyageApiKey"]
    with pytest.raises(ConfigError) as caught:
        run_program(config, preview=True, stack="dev", secret_keys=list(FAKE_SECRETS), label="bad")
    text = str(caught.value)
    assert "collections:architecture: expected one of arm64, x86_64, got 'amd64'" in text
    assert "pulumi config set --secret collections:voyageApiKey" in text


# ------------------------------------------------------------------ the assistant


def test_conversations_table_expires_what_the_runtime_writes(deployment: Deployment) -> None:
    from runtime.adapters.conversations import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

    t = table(deployment, "storage-conversations")
    assert t.inputs["hashKey"] == PARTITION_KEY == "pk"
    assert t.inputs["rangeKey"] == SORT_KEY == "sk"
    assert t.inputs["attributes"] == [{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}]
    # DynamoDB deletes each record once the epoch-seconds attribute the store writes has passed.
    assert t.inputs["ttl"] == {"attributeName": TTL_ATTRIBUTE, "enabled": True}
    assert TTL_ATTRIBUTE == "expires_at"
    assert t.inputs["billingMode"] == "PAY_PER_REQUEST"
    assert t.inputs["deletionProtectionEnabled"] is False  # dev; prod: deletionProtection


def test_the_functions_that_use_conversations_get_the_table_and_its_ttl(
    deployment: Deployment,
) -> None:
    t = table(deployment, "storage-conversations")
    for fn in FUNCTIONS:
        env = lambda_of(deployment, fn).inputs["environment"]["variables"]
        if Resource.CONVERSATIONS in fn.resources:
            assert env["COLLECTIONS_CONVERSATIONS_TABLE"] == t.state["name"], fn.name
            assert env["COLLECTIONS_CONVERSATION_TTL_HOURS"] == "24.0"
            assert env["COLLECTIONS_ASSISTANT_DAILY_TOKEN_BUDGET"] == "500000"
            settings = Settings(
                **{
                    k.removeprefix("COLLECTIONS_").lower(): v
                    for k, v in env.items()
                    if k.startswith("COLLECTIONS_")
                }
            )
            assert settings.conversation_ttl_hours == 24.0
        else:
            assert "COLLECTIONS_CONVERSATIONS_TABLE" not in env, fn.name
        assert "COLLECTIONS_CONVERSATIONS_SWEEP_EXPIRED" not in env  # DynamoDB's TTL does it
        assert "COLLECTIONS_TAVILY_API_KEY_PARAM" not in env  # no key in this stack


def conversation_statements(d: Deployment, name: str) -> dict[str, set[str]]:
    arn = table(d, "storage-conversations").state["arn"]
    doc = policy_of(d, role_of(d, lambda_of(d, function(name))))
    return {s["Sid"]: set(s["Action"]) for s in doc["Statement"] if arn in s["Resource"]}


def test_conversation_access_is_least_privilege(deployment: Deployment) -> None:
    assert conversation_statements(deployment, "assistant") == {
        "ReadConversations": {"dynamodb:GetItem", "dynamodb:Query"},
        "WriteConversations": {"dynamodb:UpdateItem"},
    }
    assert conversation_statements(deployment, "api") == {
        "ReadConversations": {"dynamodb:GetItem", "dynamodb:Query"},
        "WriteConversations": {
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        },
    }
    for name in ("thumbnail", "analyze", "embed", "cleanup", "migrate"):
        assert conversation_statements(deployment, name) == {}, name
    # The assistant reads the database and the model keys, writes no object and no event.
    doc = policy_of(deployment, role_of(deployment, lambda_of(deployment, function("assistant"))))
    actions = {a for s in doc["Statement"] for a in s["Action"]}
    assert not {a for a in actions if a.startswith(("s3:", "events:"))}


def test_the_assistant_answers_asynchronously_behind_the_authorized_api(
    deployment: Deployment,
) -> None:
    fn = function("assistant")
    assert fn.retry.maximum_retry_attempts == 0  # an answer is never paid for twice
    r = lambda_of(deployment, fn)
    assert r.inputs["timeout"] == fn.timeout_s > 30
    (config,) = [
        c
        for c in deployment.of_type(
            "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
        )
        if c.inputs["functionName"] == function_name(r)
    ]
    assert config.inputs["maximumRetryAttempts"] == 0
    # The API (30 s integration timeout) only stores the question and publishes QuestionAsked:
    # every /conversations route is the JWT-authorized proxy route of the api function.
    (integration,) = deployment.of_type("aws:apigatewayv2/integration:Integration")
    assert integration.inputs["timeoutMilliseconds"] == 30000
    routes = {
        x.inputs["routeKey"]: x.inputs for x in deployment.of_type("aws:apigatewayv2/route:Route")
    }
    assert routes["ANY /{proxy+}"]["authorizationType"] == "JWT"
    assert not any("conversations" in key for key in routes)
    api_doc = policy_of(deployment, role_of(deployment, lambda_of(deployment, function("api"))))
    assert any("events:PutEvents" in s["Action"] for s in api_doc["Statement"])


TAVILY_SECRET = "tvly-FAKE-SECRET-tavily-7a1e90c4"


@pytest.fixture(scope="session")
def with_tavily() -> Deployment:
    config = stack_config_with_secrets("dev") | {"collections:tavilyApiKey": TAVILY_SECRET}
    return run_program(
        config,
        preview=False,
        stack="dev",
        secret_keys=[*FAKE_SECRETS, "collections:tavilyApiKey"],
        label="dev-tavily",
    )


def test_a_tavily_key_becomes_a_securestring_only_the_assistant_reads(
    with_tavily: Deployment,
) -> None:
    d = with_tavily
    tavily = parameter(d, "tavilyApiKey")
    assert tavily.inputs["name"] == "/collections/dev/tavilyApiKey"
    assert tavily.inputs["type"] == "SecureString"
    assert is_secret_value(tavily.inputs["value"])
    for fn in FUNCTIONS:
        r = lambda_of(d, fn)
        env = r.inputs["environment"]["variables"]
        doc = policy_of(d, role_of(d, r))
        reads = [s for s in doc["Statement"] if tavily.state["arn"] in s["Resource"]]
        if fn.name == "assistant":
            assert env["COLLECTIONS_TAVILY_API_KEY_PARAM"] == "/collections/dev/tavilyApiKey"
            assert [(s["Sid"], s["Action"]) for s in reads] == [
                ("ReadTavilyKey", ["ssm:GetParameter"])
            ]
        else:
            assert "COLLECTIONS_TAVILY_API_KEY_PARAM" not in env and not reads, fn.name
    for r in d.resources:
        if r is tavily:
            continue
        assert TAVILY_SECRET not in json.dumps(unwrap(r.inputs), default=str), r.name
    assert TAVILY_SECRET not in json.dumps(d.outputs, default=str)
