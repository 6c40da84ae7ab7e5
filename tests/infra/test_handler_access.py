"""Topology <-> code: what each handler really calls on AWS is allowed by the IAM policy the
Pulumi program generates for its function.

The pipeline runs for real (the handlers Lambda runs, the local emulator, PostgreSQL, the fake
Anthropic API with its key in an SSM SecureString parameter); every AWS call a handler makes is
recorded with the function it ran in, turned into the IAM action and resource ARN AWS would
authorize, and evaluated against ``infra.iam.function_policy`` for that function, with the same
kind of ARNs the stack has. A call the policy does not allow is AccessDenied on AWS: the test
fails naming it. Grants no call used are reported (some serve paths this run does not take).

moto can enforce IAM itself, but its policy evaluation is documented as basic (conditions such
as ``s3:prefix`` are not evaluated); the evaluation here covers exactly the policy language the
program generates (Allow statements, action lists, ARN wildcards, ``StringLike`` conditions).
"""

from __future__ import annotations

import fnmatch
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from infra.iam import AccessTargets, PolicyDocument, function_policy
from runtime.local.cloud import EventPump, LocalCloud
from runtime.topology import FUNCTIONS, Function, event_functions, function
from tests.conftest import reset_process_state

ACCOUNT = "123456789012"
REGION = "us-east-1"

Call = tuple[str, str, dict[str, Any]]  # service, operation, parameters


class Recorder:
    """Every botocore call, attributed to the function whose handler was running."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.calls: dict[str, list[Call]] = defaultdict(list)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    import botocore.client

    import runtime.local.cloud as cloud

    rec = Recorder()
    original_call = botocore.client.BaseClient._make_api_call
    original_load = cloud.load_handler

    def make_api_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if rec.current is not None:
            rec.calls[rec.current].append((self.meta.service_model.service_name, operation, params))
        return original_call(self, operation, params)

    def load_handler(fn: Function) -> Any:
        handler = original_load(fn)

        def run(event: dict, context: Any) -> Any:
            rec.current = fn.name
            try:
                return handler(event, context)
            finally:
                rec.current = None

        return run

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(cloud, "load_handler", load_handler)
    yield rec


def targets(env: LocalCloud, parameters: dict[str, str]) -> AccessTargets:
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    return AccessTargets(
        bucket_arn=f"arn:aws:s3:::{env.bucket}",
        db_secret_arn=arn.format("secretsmanager", "secret:rds!db-local-AbCdEf"),
        db_user_arn_prefix=arn.format("rds-db", "dbuser:db-LOCAL/"),
        event_bus_arn=arn.format("events", f"event-bus/{env.bus_name}"),
        idempotency_table_arn=arn.format("dynamodb", f"table/{env.idempotency_table}"),
        anthropic_param_arn=arn.format("ssm", f"parameter{parameters['anthropicApiKey']}"),
        voyage_param_arn=arn.format("ssm", f"parameter{parameters['voyageApiKey']}"),
        conversations_table_arn=arn.format("dynamodb", f"table/{env.conversations_table}"),
        cursor_param_arn=arn.format("ssm", f"parameter{parameters['cursorKey']}"),
    )


def requests_of(
    service: str, operation: str, p: dict[str, Any], env: LocalCloud
) -> list[tuple[str, str, dict[str, str]]]:
    """(IAM action, resource ARN, condition keys) AWS authorizes for one API call."""
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    if service == "s3":
        bucket = f"arn:aws:s3:::{p['Bucket']}"
        if operation in ("GetObject", "HeadObject"):
            return [("s3:GetObject", f"{bucket}/{p['Key']}", {})]
        if operation == "PutObject":
            return [("s3:PutObject", f"{bucket}/{p['Key']}", {})]
        if operation == "DeleteObject":
            return [("s3:DeleteObject", f"{bucket}/{p['Key']}", {})]
        if operation == "DeleteObjects":
            keys = [o["Key"] for o in p["Delete"]["Objects"]]
            return [("s3:DeleteObject", f"{bucket}/{k}", {}) for k in keys]
        if operation in ("ListObjectsV2", "ListObjects"):
            return [("s3:ListBucket", bucket, {"s3:prefix": p.get("Prefix", "")})]
    if service == "events" and operation == "PutEvents":
        buses = {e.get("EventBusName", "default") for e in p["Entries"]}
        return [
            (
                "events:PutEvents",
                b if b.startswith("arn:") else arn.format("events", f"event-bus/{b}"),
                {},
            )
            for b in buses
        ]
    if service == "dynamodb" and operation in (
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
    ):
        return [(f"dynamodb:{operation}", arn.format("dynamodb", f"table/{p['TableName']}"), {})]
    if service == "dynamodb" and operation == "BatchWriteItem":
        return [
            ("dynamodb:BatchWriteItem", arn.format("dynamodb", f"table/{table}"), {})
            for table in p["RequestItems"]
        ]
    if service == "dynamodb" and operation == "TransactWriteItems":
        # Authorized as its parts (the transaction itself has no action of its own).
        parts = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
        parts["ConditionCheck"] = "ConditionCheckItem"
        return [
            (f"dynamodb:{parts[kind]}", arn.format("dynamodb", f"table/{body['TableName']}"), {})
            for entry in p["TransactItems"]
            for kind, body in entry.items()
        ]
    if service == "ssm" and operation == "GetParameter":
        return [("ssm:GetParameter", arn.format("ssm", f"parameter{p['Name']}"), {})]
    if service == "secretsmanager" and operation == "GetSecretValue":
        return [("secretsmanager:GetSecretValue", p["SecretId"], {})]
    raise AssertionError(f"no IAM mapping for {service}:{operation}; add one to this test")


def statement_allows(s: dict[str, Any], action: str, resource: str, keys: dict[str, str]) -> bool:
    if s["Effect"] != "Allow" or action not in s["Action"]:
        return False
    if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in s["Resource"]):
        return False
    for operator, conditions in s.get("Condition", {}).items():
        assert operator == "StringLike", f"condition {operator} not evaluated by this test"
        for key, patterns in conditions.items():
            if key not in keys or not any(fnmatch.fnmatchcase(keys[key], p) for p in patterns):
                return False
    return True


def denied_and_unused(
    policy: PolicyDocument, calls: list[Call], env: LocalCloud
) -> tuple[list[str], list[str]]:
    used: set[str] = set()
    denied = []
    for service, operation, params in calls:
        for action, resource, keys in requests_of(service, operation, params, env):
            allowing = [
                s for s in policy["Statement"] if statement_allows(s, action, resource, keys)
            ]
            if not allowing:
                denied.append(f"{service}:{operation} -> {action} on {resource} {keys or ''}")
            used |= {s["Sid"] for s in allowing}
    # Logs, tracing, network interfaces and the on-failure destination are used by Lambda itself.
    by_lambda = {"Logs", "Tracing", "VpcNetworkInterfaces", "OnFailureDestination"}
    unused = [s["Sid"] for s in policy["Statement"] if s["Sid"] not in used | by_lambda]
    return denied, unused


def test_the_handlers_calls_are_what_their_policies_allow(
    claude: Any, env: LocalCloud, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.corpus import sample_jpeg
    from tests.test_pipeline import new_item, reload, upload

    # The API key as on AWS: a SecureString parameter the function is told the name of.
    parameters = {
        k: f"/collections/{env.stack}/{k}" for k in ("anthropicApiKey", "voyageApiKey", "cursorKey")
    }
    env.client("ssm").put_parameter(
        Name=parameters["anthropicApiKey"], Value="sk-ant-test-key", Type="SecureString"
    )
    monkeypatch.setenv("COLLECTIONS_ANTHROPIC_API_KEY_PARAM", parameters["anthropicApiKey"])
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    # As on AWS, where DynamoDB's TTL expires conversations (the cleanup sweeps them locally only).
    monkeypatch.setenv("COLLECTIONS_CONVERSATIONS_SWEEP_EXPIRED", "false")
    reset_process_state()

    item = new_item()
    upload(env, item, sample_jpeg(1600, 1200))
    EventPump(env, retry_delay_seconds=0).drain()
    done = reload(item)
    assert done.status == "ready", (done.status, done.failure_reason)

    # A question, stored and announced as the API does; the assistant function answers it.
    from datetime import UTC, datetime

    from runtime.domain.conversations import Conversation, Message, MessageStatus, expiry
    from runtime.events import QuestionAsked
    from runtime.handlers.wiring import conversation_store, pipeline

    now = datetime.now(UTC)
    conversation = Conversation(uuid.uuid4(), item.user_id, None, now, expiry(now, 24))
    question = Message(
        uuid.uuid4(), conversation.id, "what is in my photo?", MessageStatus.PENDING, now
    )
    store = conversation_store()
    store.create(conversation)
    assert store.add_message(item.user_id, conversation, question)
    pipeline().publisher.publish(
        QuestionAsked(user_id=item.user_id, conversation_id=conversation.id, message_id=question.id)
    )
    EventPump(env, retry_delay_seconds=0).drain()
    answered = store.get_message(item.user_id, conversation.id, question.id)
    assert answered is not None and answered.status is MessageStatus.DONE, answered

    from runtime.local.worker import scheduled_event
    from tests.test_pipeline import invoke

    env.client("s3").put_object(
        Bucket=env.bucket, Key=f"users/u/items/{uuid.uuid4()}/original", Body=b"x"
    )
    recorder.current = "cleanup"
    invoke("cleanup", scheduled_event("collections-cleanup"))
    recorder.current = None

    t = targets(env, parameters)
    report = {}
    problems = []
    for fn in event_functions():
        calls = recorder.calls[fn.name]
        assert calls, f"{fn.name} made no AWS call: the run did not exercise it"
        policy = function_policy(
            fn,
            t,
            log_group_arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/collections/{fn.name}",
            dead_letter_queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{fn.name}-dlq",
        )
        denied, unused = denied_and_unused(policy, calls, env)
        problems += [f"{fn.name}: AccessDenied for {d}" for d in denied]
        report[fn.name] = unused
    assert not problems, "\n".join(problems)
    print("grants no call used in this run:", report)


def test_a_missing_grant_is_denied(env: LocalCloud) -> None:
    """The evaluation itself: a call outside the policy is denied, one inside is allowed."""
    fn = function("thumbnail")
    params = {k: f"/collections/x/{k}" for k in ("anthropicApiKey", "voyageApiKey", "cursorKey")}
    policy = function_policy(
        fn, targets(env, params), log_group_arn="l", dead_letter_queue_arn=None
    )
    ok = ("s3", "GetObject", {"Bucket": env.bucket, "Key": "users/u/items/i/original"})
    derived_read = ("s3", "GetObject", {"Bucket": env.bucket, "Key": "users/u/items/i/derived/a"})
    listing = ("s3", "ListObjectsV2", {"Bucket": env.bucket, "Prefix": "users/"})
    denied, _ = denied_and_unused(policy, [ok], env)
    assert denied == []
    denied, _ = denied_and_unused(policy, [derived_read, listing], env)
    assert len(denied) == 2
    cleanup = function_policy(
        function("cleanup"), targets(env, params), log_group_arn="l", dead_letter_queue_arn=None
    )
    outside = ("s3", "ListObjectsV2", {"Bucket": env.bucket, "Prefix": "other/"})
    assert denied_and_unused(cleanup, [listing], env)[0] == []
    assert len(denied_and_unused(cleanup, [outside], env)[0]) == 1
    assert {f.name for f in event_functions()} < {f.name for f in FUNCTIONS}
