"""The policy pack (policy/): each policy with a compliant and a violating resource (validate
functions called directly with constructed arguments), and every policy over the program's own
mocked deployments, which must comply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_harness import REPO_ROOT, Deployment, deployment_for
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.secret import Secret

from infra.build import PLATFORMS
from policy import rules
from runtime.topology import FUNCTIONS, Http

DIGEST = "sha256:" + "ab" * 32
IMAGE_URI = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/runtime@{DIGEST}"
GOOD_LAMBDA = {
    "packageType": "Image",
    "imageUri": IMAGE_URI,
    "architectures": ["arm64"],
    "loggingConfig": {"logFormat": "JSON", "logGroup": "/collections/dev/api-1"},
}


def options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def urn(typ: str, name: str, stack: str = "dev") -> str:
    return f"urn:pulumi:{stack}::collections::{typ}::{name}"


def resource_args(
    typ: str,
    props: dict[str, Any],
    *,
    name: str = "r",
    stack: str = "dev",
    protect: bool = False,
    config: dict[str, Any] | None = None,
) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        typ, props, urn(typ, name, stack), name, options(protect), None, config
    )


def violations(policy: ResourceValidationPolicy, args: ResourceValidationArgs) -> list[str]:
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_resource(typ: str, name: str, props: dict[str, Any]) -> PolicyResource:
    return PolicyResource(typ, props, urn(typ, name), name, options(), None, None, [], {})


def stack_violations(policy: StackValidationPolicy, resources: list[PolicyResource]) -> list[str]:
    found: list[str] = []
    policy.validate(StackValidationArgs(resources), lambda message, urn=None: found.append(message))
    return found


# ------------------------------------------------------------------ the pack


def test_the_pack_holds_every_policy_mandatory() -> None:
    names = [p.name for p in rules.POLICIES]
    assert len(names) == len(set(names))
    assert all(p.enforcement_level is EnforcementLevel.MANDATORY for p in rules.POLICIES)
    main = (REPO_ROOT / "policy" / "__main__.py").read_text()
    assert "PolicyPack(" in main and "policies=POLICIES" in main
    project = yaml.safe_load((REPO_ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert (REPO_ROOT / "policy" / project["runtime"]["options"]["virtualenv"]).resolve() == (
        REPO_ROOT / ".venv"
    )


def test_the_packs_platforms_are_the_programs() -> None:
    assert dict(rules.PLATFORMS) == dict(PLATFORMS)


# ------------------------------------------------------------------ image by digest


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        (GOOD_LAMBDA, None),
        (
            GOOD_LAMBDA | {"imageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/r:latest"},
            "by digest",
        ),
        (GOOD_LAMBDA | {"imageUri": "repo@sha256:short"}, "by digest"),
        ({"packageType": "Zip", "handler": "app.handler"}, "packageType Image"),
    ],
    ids=["digest", "tag", "bad-digest", "zip"],
)
def test_image_by_digest(props: dict[str, Any], problem: str | None) -> None:
    found = violations(rules.image_by_digest, resource_args(rules.LAMBDA, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize(
    ("platforms", "problem"),
    [
        (["linux/arm64"], None),
        (["linux/arm64", "linux/amd64"], "exactly one"),
        (["linux/s390x"], "not a Lambda"),
    ],
)
def test_image_single_lambda_platform(platforms: list[str], problem: str | None) -> None:
    found = violations(
        rules.image_platform, resource_args(rules.DOCKER_IMAGE, {"platforms": platforms})
    )
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize(
    ("architecture", "platform", "compliant"),
    [("arm64", "linux/arm64", True), ("x86_64", "linux/arm64", False), (None, "linux/amd64", True)],
)
def test_architecture_matches_the_image_platform(
    architecture: str | None, platform: str, compliant: bool
) -> None:
    fn = dict(GOOD_LAMBDA)
    if architecture is None:
        del fn["architectures"]  # Lambda's default: x86_64
    else:
        fn["architectures"] = [architecture]
    resources = [
        stack_resource(rules.DOCKER_IMAGE, "image", {"platforms": [platform], "digest": DIGEST}),
        stack_resource(rules.LAMBDA, "api", fn),
    ]
    found = stack_violations(rules.architecture_matches_platform, resources)
    assert found == [] if compliant else (len(found) == 1 and "must agree" in found[0])


def test_architecture_policy_does_not_apply_to_a_promoting_stack() -> None:
    with pytest.raises(_NotApplicableError):
        stack_violations(
            rules.architecture_matches_platform, [stack_resource(rules.LAMBDA, "api", GOOD_LAMBDA)]
        )


# ------------------------------------------------------------------ DLQs


TARGET = {
    "arn": "arn:aws:lambda:us-east-1:1:function:f",
    "retryPolicy": {"maximumRetryAttempts": 2, "maximumEventAgeInSeconds": 3600},
    "deadLetterConfig": {"arn": "arn:aws:sqs:us-east-1:1:dlq"},
}
INVOKE = {"functionName": "f", "destinationConfig": {"onFailure": {"destination": "arn:sqs"}}}


@pytest.mark.parametrize(
    ("typ", "props", "problem"),
    [
        (rules.EVENT_TARGET, TARGET, None),
        (
            rules.EVENT_TARGET,
            {k: v for k, v in TARGET.items() if k != "deadLetterConfig"},
            "dead-letter",
        ),
        (
            rules.EVENT_TARGET,
            {k: v for k, v in TARGET.items() if k != "retryPolicy"},
            "retryPolicy",
        ),
        (rules.INVOKE_CONFIG, INVOKE, None),
        (rules.INVOKE_CONFIG, {"functionName": "f", "maximumRetryAttempts": 2}, "on-failure"),
    ],
    ids=["target", "target-no-dlq", "target-no-retry", "invoke", "invoke-no-destination"],
)
def test_dlq_on_every_async_target(typ: str, props: dict[str, Any], problem: str | None) -> None:
    found = violations(rules.async_targets_dlq, resource_args(typ, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize("covered", [True, False])
def test_every_targeted_function_has_an_on_failure_destination(covered: bool) -> None:
    fn = GOOD_LAMBDA | {"name": "f", "arn": TARGET["arn"]}
    resources = [
        stack_resource(rules.LAMBDA, "thumbnail", fn),
        stack_resource(rules.EVENT_TARGET, "target", TARGET),
    ]
    if covered:
        resources.append(stack_resource(rules.INVOKE_CONFIG, "async", INVOKE))
    found = stack_violations(rules.async_functions_destination, resources)
    assert found == [] if covered else (len(found) == 1 and "thumbnail" in found[0])


# ------------------------------------------------------------------ log retention


@pytest.mark.parametrize(
    ("typ", "props", "problem"),
    [
        (rules.LOG_GROUP, {"retentionInDays": 14}, None),
        (rules.LOG_GROUP, {"namePrefix": "/x-"}, "retention"),
        (rules.LOG_GROUP, {"retentionInDays": 0}, "retention"),
        (rules.LAMBDA, GOOD_LAMBDA, None),
        (
            rules.LAMBDA,
            {k: v for k, v in GOOD_LAMBDA.items() if k != "loggingConfig"},
            "never expires",
        ),
    ],
    ids=["group", "group-none", "group-zero", "function", "function-implicit-group"],
)
def test_log_retention(typ: str, props: dict[str, Any], problem: str | None) -> None:
    found = violations(rules.log_retention, resource_args(typ, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


# ------------------------------------------------------------------ RDS

RDS_OK = {"publiclyAccessible": False, "storageEncrypted": True, "deletionProtection": True}


@pytest.mark.parametrize(
    ("props", "stack", "protect", "problems"),
    [
        (RDS_OK, "prod", True, []),
        (RDS_OK | {"deletionProtection": False}, "dev", False, []),
        (RDS_OK | {"publiclyAccessible": True}, "dev", False, ["publicly accessible"]),
        ({"storageEncrypted": True}, "dev", False, ["publicly accessible"]),
        (RDS_OK | {"storageEncrypted": False}, "dev", False, ["encrypted"]),
        (RDS_OK | {"deletionProtection": False}, "prod", True, ["deletionProtection"]),
        (RDS_OK, "prod", False, ["`protect`"]),
    ],
    ids=[
        "prod-ok",
        "dev-ok",
        "public",
        "public-by-default",
        "unencrypted",
        "prod-no-deletion-protection",
        "prod-unprotected",
    ],
)
def test_rds_private_encrypted_protected(
    props: dict[str, Any], stack: str, protect: bool, problems: list[str]
) -> None:
    args = resource_args(rules.RDS_INSTANCE, props, stack=stack, protect=protect)
    found = violations(rules.rds_private_encrypted_protected, args)
    assert len(found) == len(problems), found
    for message, problem in zip(found, problems, strict=True):
        assert problem in message


def test_production_stacks_come_from_the_policy_config() -> None:
    props = RDS_OK | {"deletionProtection": False}
    args = resource_args(
        rules.RDS_INSTANCE, props, stack="staging", config={"productionStacks": ["staging"]}
    )
    assert len(violations(rules.rds_private_encrypted_protected, args)) == 2


# ------------------------------------------------------------------ buckets

BLOCK = dict.fromkeys(rules.PUBLIC_ACCESS_SWITCHES, True) | {"bucket": "b-1"}


@pytest.mark.parametrize(
    ("props", "problem"),
    [(BLOCK, None), (BLOCK | {"restrictPublicBuckets": False}, "restrictPublicBuckets")],
)
def test_bucket_public_access_block(props: dict[str, Any], problem: str | None) -> None:
    found = violations(
        rules.bucket_public_access_block, resource_args(rules.PUBLIC_ACCESS_BLOCK, props)
    )
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize("blocked", [True, False])
def test_every_bucket_has_a_public_access_block(blocked: bool) -> None:
    resources = [stack_resource("aws:s3/bucket:Bucket", "bucket", {"bucket": "b-1", "id": "b-1"})]
    if blocked:
        resources.append(stack_resource(rules.PUBLIC_ACCESS_BLOCK, "block", BLOCK))
    found = stack_violations(rules.every_bucket_blocked, resources)
    assert found == [] if blocked else (len(found) == 1 and "bucket" in found[0])


# ------------------------------------------------------------------ IAM


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


READ = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}


@pytest.mark.parametrize(
    ("typ", "props", "problem"),
    [
        ("aws:iam/rolePolicy:RolePolicy", {"policy": document(READ)}, None),
        (
            "aws:iam/rolePolicy:RolePolicy",
            {"policy": document(READ | {"Action": "s3:*"})},
            "'s3:*'",
        ),
        (
            "aws:iam/policy:Policy",
            {"policy": document(READ | {"Action": ["s3:Get*"]})},
            "'s3:Get*'",
        ),
        (
            "aws:iam/role:Role",
            {"inlinePolicies": [{"name": "p", "policy": document(READ | {"Action": "*"})}]},
            "'*'",
        ),
        (
            "aws:iam/rolePolicy:RolePolicy",
            {"policy": document({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})},
            "NotAction",
        ),
        (
            "aws:s3/bucketPolicy:BucketPolicy",
            {"policy": document({"Effect": "Deny", "Action": "s3:*", "Principal": "*"})},
            None,
        ),
        (
            "aws:sqs/queuePolicy:QueuePolicy",
            {"policy": document(READ | {"Action": "sqs:*"})},
            "'sqs:*'",
        ),
    ],
    ids=[
        "exact",
        "service-wildcard",
        "prefix-wildcard",
        "inline-star",
        "not-action",
        "deny-ok",
        "queue-policy",
    ],
)
def test_no_wildcard_iam_actions(typ: str, props: dict[str, Any], problem: str | None) -> None:
    found = violations(rules.no_wildcard_iam, resource_args(typ, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


# ------------------------------------------------------------------ routes


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        ({"routeKey": "ANY /{proxy+}", "authorizationType": "JWT", "authorizerId": "a1"}, None),
        ({"routeKey": "GET /health", "authorizationType": "NONE"}, None),
        ({"routeKey": "ANY /{proxy+}", "authorizationType": "NONE"}, "no authorizer"),
        ({"routeKey": "POST /items"}, "no authorizer"),
        ({"routeKey": "ANY /{proxy+}", "authorizationType": "JWT"}, "without an authorizerId"),
    ],
    ids=["authorized", "public", "open", "default-none", "jwt-without-authorizer"],
)
def test_authorizer_on_non_public_routes(props: dict[str, Any], problem: str | None) -> None:
    found = violations(rules.route_authorizer, resource_args(rules.ROUTE, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


def test_the_default_public_routes_are_the_topologys() -> None:
    (api,) = [fn for fn in FUNCTIONS if isinstance(fn.trigger, Http)]
    assert isinstance(api.trigger, Http)
    assert set(rules.DEFAULT_PUBLIC_ROUTES) == set(api.trigger.public_routes)


# ------------------------------------------------------------------ the program complies


def _stack_resources(d: Deployment) -> list[PolicyResource]:
    return [
        PolicyResource(r.type, r.state, r.urn, r.name, options(r.protect), None, None, [], {})
        for r in d.resources
        if r.custom
    ]


@pytest.mark.parametrize("label", ["dev-update", "prod-update"])
def test_the_program_complies_with_every_policy(label: str) -> None:
    d = deployment_for(label)
    found: list[str] = []
    for r in d.resources:
        if not r.custom:
            continue
        args = ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, options(r.protect), None)
        for policy in rules.RESOURCE_POLICIES:
            policy.validate(
                args, lambda m, u=None, p=policy, r=r: found.append(f"{p.name} {r.name}: {m}")
            )
    resources = _stack_resources(d)
    for policy in rules.STACK_POLICIES:
        try:
            policy.validate(
                StackValidationArgs(resources),
                lambda m, u=None, p=policy: found.append(f"{p.name}: {m}"),
            )
        except _NotApplicableError:
            assert policy is rules.architecture_matches_platform and label == "prod-update"
    assert found == []


def test_a_program_defect_is_caught_by_the_pack() -> None:
    """The same check on a deployment whose prod database were made public."""
    prod = deployment_for("prod-update")
    (db,) = prod.of_type(rules.RDS_INSTANCE)
    args = ResourceValidationArgs(
        db.type, db.inputs | {"publiclyAccessible": True}, db.urn, db.name, options(False), None
    )
    found = violations(rules.rds_private_encrypted_protected, args)
    assert any("publicly accessible" in m for m in found)
    assert any("`protect`" in m for m in found)


def test_policy_module_paths() -> None:
    assert Path(rules.__file__).parent == REPO_ROOT / "policy"


# ------------------------------------------------------------------ through the analyzer protocol


def _servicer() -> Any:
    """The analyzer service PolicyPack serves to the engine, without the server."""
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    return _PolicyAnalyzerServicer(
        rules.PACK_NAME, "0.1.0", rules.POLICIES, EnforcementLevel.MANDATORY
    )


def _struct(props: dict[str, Any]) -> Any:
    from google.protobuf import json_format, struct_pb2

    struct = struct_pb2.Struct()
    json_format.ParseDict(props, struct)
    return struct


def _analyze(typ: str, props: dict[str, Any], *, protect: bool = False) -> list[Any]:
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeRequest(
        type=typ,
        properties=_struct(props),
        urn=urn(typ, "r"),
        name="r",
        options=analyzer_pb2.AnalyzerResourceOptions(protect=protect),
    )
    return list(_servicer().Analyze(request, None).diagnostics)


def test_the_engine_gets_a_mandatory_diagnostic_for_a_violation() -> None:
    """What `pulumi preview --policy-pack policy` calls: Analyze with the resource's inputs."""
    from pulumi.runtime.proto import analyzer_pb2

    assert _analyze(rules.LAMBDA, GOOD_LAMBDA) == []
    (diagnostic,) = _analyze(rules.LAMBDA, GOOD_LAMBDA | {"imageUri": "repo:latest"})
    assert diagnostic.policyName == "lambda-image-by-digest"
    assert diagnostic.policyPackName == rules.PACK_NAME
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY


def test_an_unknown_value_in_a_preview_is_reported_not_failed() -> None:
    from pulumi.runtime.proto import analyzer_pb2
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    (diagnostic,) = _analyze(rules.LAMBDA, GOOD_LAMBDA | {"imageUri": UNKNOWN_STRING_VALUE})
    assert "can't run policy 'lambda-image-by-digest'" in diagnostic.message
    assert diagnostic.enforcementLevel == analyzer_pb2.ADVISORY


def test_the_engine_sees_every_policy() -> None:
    info = _servicer().GetAnalyzerInfo(None, None)
    assert [p.name for p in info.policies] == [p.name for p in rules.POLICIES]


@pytest.mark.parametrize("label", ["dev-update", "prod-update"])
def test_the_program_passes_the_stack_analysis(label: str) -> None:
    from pulumi.runtime.proto import analyzer_pb2

    d = deployment_for(label)
    resources = [
        analyzer_pb2.AnalyzerResource(
            type=r.type,
            properties=_struct(json.loads(json.dumps(r.state, default=str))),
            urn=r.urn,
            name=r.name,
            options=analyzer_pb2.AnalyzerResourceOptions(protect=r.protect),
        )
        for r in d.resources
        if r.custom
    ]
    response = _servicer().AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources), None)
    assert list(response.diagnostics) == []


# ------------------------------------------------------------------ encryption, IAM scope, secrets


@pytest.mark.parametrize(
    ("typ", "props", "problem"),
    [
        (rules.QUEUE, {"sqsManagedSseEnabled": True}, None),
        (rules.QUEUE, {"kmsMasterKeyId": "alias/k"}, None),
        (rules.QUEUE, {"sqsManagedSseEnabled": False}, "encrypted at rest"),
        (rules.QUEUE, {}, "encrypted at rest"),
        (rules.TOPIC, {"kmsMasterKeyId": "arn:aws:kms:us-east-1:1:key/k"}, None),
        (rules.TOPIC, {}, "customer-managed KMS key"),
    ],
    ids=["sqs-sse", "sqs-kms", "sqs-off", "sqs-unset", "topic-kms", "topic-plain"],
)
def test_queues_and_topics_are_encrypted(
    typ: str, props: dict[str, Any], problem: str | None
) -> None:
    found = violations(rules.queue_topic_encryption, resource_args(typ, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize("encrypted", [True, False])
def test_every_bucket_has_default_encryption(encrypted: bool) -> None:
    bucket = stack_resource(rules.BUCKETS[0], "b", {"id": "b-1", "bucket": "b-1"})
    sse = stack_resource(
        rules.BUCKET_ENCRYPTION[0],
        "sse",
        {
            "bucket": "b-1" if encrypted else "other",
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}],
        },
    )
    found = stack_violations(rules.every_bucket_encrypted, [bucket, sse])
    assert found == [] if encrypted else (len(found) == 1 and "encryption" in found[0])


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Effect": "Allow", "Action": ["xray:PutTraceSegments"], "Resource": ["*"]}, None),
        ({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]}, None),
        ({"Effect": "Deny", "Action": ["s3:PutObject"], "Resource": "*"}, None),
        ({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}, "s3:GetObject"),
        (
            {
                "Effect": "Allow",
                "Action": ["ec2:DescribeSubnets", "ssm:GetParameter"],
                "Resource": ["*"],
            },
            "ssm:GetParameter",
        ),
        (
            {"Effect": "Allow", "Action": ["s3:GetObject"], "NotResource": ["arn:aws:s3:::b"]},
            "NotResource",
        ),
    ],
    ids=["xray", "scoped", "deny", "s3-star", "mixed", "not-resource"],
)
def test_resource_wildcards_only_for_unscopable_actions(
    statement: dict[str, Any], problem: str | None
) -> None:
    props = {"policy": document(statement)}
    found = violations(
        rules.iam_resource_wildcards, resource_args("aws:iam/rolePolicy:RolePolicy", props)
    )
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


def test_resource_wildcard_exceptions_come_from_the_policy_config() -> None:
    props = {"policy": document({"Effect": "Allow", "Action": "ec2:DescribeVpcs", "Resource": "*"})}
    typ = "aws:iam/rolePolicy:RolePolicy"
    assert violations(rules.iam_resource_wildcards, resource_args(typ, props))
    config = {"wildcardResourceActions": ["ec2:DescribeVpcs"]}
    assert violations(rules.iam_resource_wildcards, resource_args(typ, props, config=config)) == []


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        (
            {"name": "/collections/dev/voyageApiKey", "type": "SecureString", "value": Secret("v")},
            None,
        ),
        ({"name": "/collections/dev/bucketName", "type": "String", "value": "b"}, None),
        ({"name": "/collections/dev/voyageApiKey", "type": "String", "value": "v"}, "SecureString"),
        (
            {"name": "/collections/dev/settings", "type": "String", "value": Secret("v")},
            "SecureString",
        ),
    ],
    ids=["secure", "plain-non-secret", "key-as-string", "secret-as-string"],
)
def test_secrets_are_securestring(props: dict[str, Any], problem: str | None) -> None:
    found = violations(rules.secure_parameters, resource_args(rules.PARAMETER, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize(
    ("typ", "props", "problem"),
    [
        (
            rules.LAMBDA,
            {"environment": {"variables": {"COLLECTIONS_VOYAGE_API_KEY_PARAM": "/p"}}},
            None,
        ),
        (
            rules.LAMBDA,
            {"environment": {"variables": {"COLLECTIONS_DB_SECRET_ARN": "arn:x"}}},
            None,
        ),
        (
            rules.LAMBDA,
            {"environment": {"variables": {"VOYAGE_API_KEY": "pa-123"}}},
            "looks like a secret",
        ),
        (rules.LAMBDA, {"environment": {"variables": {"DB_PASSWORD": "x"}}}, "looks like a secret"),
        (rules.LAMBDA, {"environment": {"variables": {"SETTING": Secret("x")}}}, "secret value"),
        (rules.STACK, {"apiUrl": "https://x"}, None),
        (rules.STACK, {"dbPassword": Secret("x")}, "stack output dbPassword"),
    ],
    ids=[
        "param-name",
        "secret-arn",
        "api-key",
        "password",
        "secret-value",
        "output",
        "secret-output",
    ],
)
def test_no_secret_in_environment_or_outputs(
    typ: str, props: dict[str, Any], problem: str | None
) -> None:
    found = violations(rules.no_secret_exposed, resource_args(typ, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize(("name", "compliant"), [(None, True), ("collections-api", False)])
def test_no_fixed_function_names(name: str | None, compliant: bool) -> None:
    props = GOOD_LAMBDA | ({"name": name} if name else {})
    found = violations(rules.function_auto_named, resource_args(rules.LAMBDA, props))
    assert found == [] if compliant else (len(found) == 1 and "auto-named" in found[0])


@pytest.mark.parametrize("typ", rules.STATEFUL_TYPES)
@pytest.mark.parametrize(
    ("stack", "protect", "compliant"),
    [("prod", True, True), ("prod", False, False), ("dev", False, True)],
)
def test_stateful_resources_are_protected_in_production(
    typ: str, stack: str, protect: bool, compliant: bool
) -> None:
    found = violations(
        rules.stateful_protected, resource_args(typ, {}, stack=stack, protect=protect)
    )
    assert found == [] if compliant else (len(found) == 1 and "`protect`" in found[0])


ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123"


@pytest.mark.parametrize(
    ("jwt", "problem"),
    [
        ({"issuer": ISSUER, "audiences": ["client123"]}, None),
        ({"issuer": ISSUER, "audiences": []}, "audience"),
        ({"issuer": ISSUER}, "audience"),
        ({"issuer": ISSUER, "audiences": ["*"]}, "audience"),
        ({"issuer": "https://evil.example.com/", "audiences": ["client123"]}, "not a Cognito"),
    ],
    ids=["ok", "empty", "missing", "star", "foreign-issuer"],
)
def test_jwt_authorizer_audience(jwt: dict[str, Any], problem: str | None) -> None:
    props = {"authorizerType": "JWT", "jwtConfiguration": jwt}
    found = violations(rules.authorizer_audience, resource_args(rules.AUTHORIZER, props))
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize(
    ("policy", "typ", "mutate"),
    [
        (
            "queues-and-topics-encrypted",
            "aws:sns/topic:Topic",
            lambda p: {**p, "kmsMasterKeyId": None},
        ),
        (
            "queues-and-topics-encrypted",
            "aws:sqs/queue:Queue",
            lambda p: {**p, "sqsManagedSseEnabled": False},
        ),
        ("no-fixed-function-names", rules.LAMBDA, lambda p: {**p, "name": "collections-api"}),
        (
            "jwt-authorizer-audience",
            rules.AUTHORIZER,
            lambda p: {**p, "jwtConfiguration": {**p["jwtConfiguration"], "audiences": []}},
        ),
    ],
    ids=["topic", "queue", "function-name", "audience"],
)
def test_the_new_rules_catch_a_defect_in_the_programs_own_resources(
    policy: str, typ: str, mutate: Any
) -> None:
    """Each rule passes on the program's resource and fails on the same resource made wrong."""
    (p,) = [x for x in rules.RESOURCE_POLICIES if x.name == policy]
    r = deployment_for("dev-update").of_type(typ)[0]
    assert violations(p, resource_args(typ, r.inputs)) == []
    assert violations(p, resource_args(typ, mutate(r.inputs)))
