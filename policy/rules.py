"""The rules Collections lives by (DESIGN.md), as Pulumi policies (``pulumi_policy``).

``pulumi preview/up --policy-pack policy`` runs them on every resource before it is created or
updated (resource policies) and on the whole stack (stack policies); every one is mandatory, so a
violation fails the preview and stops the update. The program's own tests prove the program
complies (``tests/infra/test_policy_pack.py`` runs every policy over the mocked deployment), and
each policy is unit-tested with a compliant and a violating resource.

Resource policies see a resource's *inputs* as the engine has them (camelCase keys); stack
policies see the resources' outputs. During a preview some values are not known yet: reading one
raises ``UnknownValueError`` and the engine reports that policy as "can't run during preview"
(advisory) for that resource; the update then runs it on the known values.

This module imports nothing from the program: a policy that reused the program's code would
agree with the program by construction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError
from pulumi_policy.secret import Secret

PACK_NAME = "collections"
MANDATORY = EnforcementLevel.MANDATORY

LAMBDA = "aws:lambda/function:Function"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RDS_INSTANCE = "aws:rds/instance:Instance"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ROUTE = "aws:apigatewayv2/route:Route"
DOCKER_IMAGE = "docker-build:index:Image"

# Lambda architecture -> the image platform it runs (Lambda's default architecture is x86_64).
PLATFORMS: Mapping[str, str] = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
DEFAULT_ARCHITECTURE = "x86_64"
DIGEST_REFERENCE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")

DEFAULT_PRODUCTION_STACKS = ("prod",)
DEFAULT_PUBLIC_ROUTES = (
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
)
AUTHORIZED_TYPES = ("JWT", "CUSTOM", "AWS_IAM")
PUBLIC_ACCESS_SWITCHES = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
# Resource type -> where its policy documents are: ("policy",) or ("inlinePolicies", "policy").
POLICY_DOCUMENTS: Mapping[str, tuple[str, ...]] = {
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:iam/policy:Policy": ("policy",),
    "aws:iam/userPolicy:UserPolicy": ("policy",),
    "aws:iam/groupPolicy:GroupPolicy": ("policy",),
    "aws:iam/role:Role": ("inlinePolicies", "policy"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy",),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy",),
    "aws:sns/topicPolicy:TopicPolicy": ("policy",),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("policy",),
}


# ------------------------------------------------------------------ helpers


def plain(value: Any) -> Any:
    """A property value without its secret wrapper."""
    return value.value if isinstance(value, Secret) else value


def stack_of(urn: str) -> str:
    """``urn:pulumi:<stack>::<project>::…`` -> ``<stack>``."""
    return urn.split("::")[0].removeprefix("urn:pulumi:")


def known(read: Callable[[], Any], default: Any = None) -> Any:
    """A value, or ``default`` when it is not known yet (a preview of a stack policy)."""
    try:
        return read()
    except UnknownValueError:
        return default


def as_list(value: Any) -> list[Any]:
    value = plain(value)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def policy_documents(resource_type: str, props: Mapping[str, Any]) -> list[dict[str, Any]]:
    path = POLICY_DOCUMENTS.get(resource_type)
    if path is None:
        return []
    if path == ("inlinePolicies", "policy"):
        raw = [plain(p).get("policy") for p in as_list(props.get("inlinePolicies"))]
    else:
        raw = [props.get("policy")]
    documents = []
    for document in raw:
        document = plain(document)
        if isinstance(document, str) and document.strip():
            document = json.loads(document)
        if isinstance(document, dict):
            documents.append(document)
    return documents


def wildcard_allows(document: Mapping[str, Any]) -> list[str]:
    """Problems of one policy document: Allow statements with a wildcard action or NotAction."""
    problems = []
    for i, statement in enumerate(as_list(document.get("Statement"))):
        if statement.get("Effect") != "Allow":
            continue  # a Deny with a wildcard (e.g. TLS-only on s3:*) only takes rights away
        sid = statement.get("Sid") or f"#{i}"
        if "NotAction" in statement:
            problems.append(f"statement {sid} allows NotAction (everything but a list)")
        for action in as_list(statement.get("Action")):
            if "*" in action:
                problems.append(f"statement {sid} allows the wildcard action {action!r}")
    return problems


def _config_list(args: Any, key: str, default: Iterable[str]) -> tuple[str, ...]:
    value = args.get_config().get(key)
    return tuple(value) if isinstance(value, list | tuple) else tuple(default)


# ------------------------------------------------------------------ image by digest


def validate_image_by_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LAMBDA:
        return
    props = args.props
    if props.get("packageType") != "Image":
        report("Lambda functions run the runtime container image (packageType Image).", None)
        return
    uri = props.get("imageUri")
    if not isinstance(uri, str) or not DIGEST_REFERENCE.match(uri):
        report(
            f"imageUri {uri!r} must reference the image by digest (<repository>@sha256:<64 hex>),"
            " never by tag: a tag can move, a digest is the exact bytes that were tested.",
            None,
        )


image_by_digest = ResourceValidationPolicy(
    name="lambda-image-by-digest",
    description="Lambda functions run a container image referenced by digest, never by tag.",
    validate=validate_image_by_digest,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ architecture = platform


def validate_image_platform(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != DOCKER_IMAGE:
        return
    platforms = as_list(args.props.get("platforms"))
    if len(platforms) != 1:
        report(
            f"the runtime image must be built for exactly one platform, got {platforms}: Lambda "
            "rejects a multi-platform image index.",
            None,
        )
    elif platforms[0] not in PLATFORMS.values():
        report(
            f"platform {platforms[0]!r} is not a Lambda platform ({sorted(PLATFORMS.values())}).",
            None,
        )


image_platform = ResourceValidationPolicy(
    name="image-single-lambda-platform",
    description="The runtime image is built for exactly one Lambda platform.",
    validate=validate_image_platform,
    enforcement_level=MANDATORY,
)


def validate_architecture_matches_platform(
    args: StackValidationArgs, report: ReportViolation
) -> None:
    images = [r for r in args.resources if r.resource_type == DOCKER_IMAGE]
    if not images:
        args.not_applicable(
            "no image is built in this stack (a promoted image is checked by the program)"
        )
    by_digest: dict[str, set[str]] = {}
    every_platform: set[str] = set()
    for image in images:
        platforms = set(known(lambda image=image: as_list(image.props.get("platforms")), []))
        every_platform |= platforms
        digest = known(lambda image=image: image.props.get("digest"))
        if isinstance(digest, str) and digest:
            by_digest[digest] = platforms
    for fn in args.resources:
        if fn.resource_type != LAMBDA:
            continue
        if known(lambda fn=fn: fn.props.get("packageType")) != "Image":
            continue
        architectures = known(lambda fn=fn: as_list(fn.props.get("architectures")), None)
        if architectures is None:
            continue
        architecture = (architectures or [DEFAULT_ARCHITECTURE])[0]
        uri = known(lambda fn=fn: fn.props.get("imageUri")) or ""
        digest = uri.rsplit("@", 1)[-1] if "@" in uri else None
        platforms = by_digest.get(digest, every_platform) if digest else every_platform
        wanted = PLATFORMS.get(architecture)
        if wanted not in platforms:
            report(
                f"function {fn.name} runs on {architecture} ({wanted}) but its image is built for "
                f"{sorted(platforms)}: build platform and function architecture must agree.",
                fn.urn,
            )


architecture_matches_platform = StackValidationPolicy(
    name="lambda-architecture-matches-image-platform",
    description="Every function's architecture is the platform its image was built for.",
    validate=validate_architecture_matches_platform,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ DLQ on every async target


def validate_async_targets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == EVENT_TARGET:
        dlq = plain(props.get("deadLetterConfig")) or {}
        if not dlq.get("arn"):
            report(
                "every EventBridge target needs a dead-letter queue (deadLetterConfig.arn): "
                "an event that exhausts its retries must not be lost.",
                None,
            )
        if not plain(props.get("retryPolicy")):
            report("every EventBridge target needs an explicit retryPolicy.", None)
    elif args.resource_type == INVOKE_CONFIG:
        config = plain(props.get("destinationConfig")) or {}
        on_failure = plain(config.get("onFailure")) or {}
        if not on_failure.get("destination"):
            report(
                "an asynchronously invoked function needs an on-failure destination "
                "(destinationConfig.onFailure.destination, its dead-letter queue).",
                None,
            )


async_targets_dlq = ResourceValidationPolicy(
    name="dlq-on-every-async-target",
    description="EventBridge targets and async Lambda invocations fail into a dead-letter queue.",
    validate=validate_async_targets,
    enforcement_level=MANDATORY,
)


def validate_async_functions_have_destination(
    args: StackValidationArgs, report: ReportViolation
) -> None:
    targeted: set[str] = set()
    for target in args.resources:
        if target.resource_type == EVENT_TARGET:
            arn = known(lambda t=target: t.props.get("arn"))
            if isinstance(arn, str):
                targeted.add(arn)
    covered: set[str] = set()
    for config in args.resources:
        if config.resource_type != INVOKE_CONFIG:
            continue
        destination = known(
            lambda c=config: ((c.props.get("destinationConfig") or {}).get("onFailure") or {}).get(
                "destination"
            )
        )
        name = known(lambda c=config: c.props.get("functionName"))
        if destination and isinstance(name, str):
            covered.add(name)
    for fn in args.resources:
        if fn.resource_type != LAMBDA:
            continue
        arn = known(lambda fn=fn: fn.props.get("arn"))
        name = known(lambda fn=fn: fn.props.get("name"))
        if arn in targeted and not ({arn, name} & covered):
            report(
                f"function {fn.name} is invoked asynchronously by EventBridge but has no event "
                "invoke config with an on-failure destination.",
                fn.urn,
            )


async_functions_destination = StackValidationPolicy(
    name="async-functions-have-on-failure-destination",
    description="Every function EventBridge invokes has an async on-failure destination.",
    validate=validate_async_functions_have_destination,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ log retention


def validate_log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == LOG_GROUP:
        days = props.get("retentionInDays")
        if not isinstance(days, int | float) or days <= 0:
            report("log groups need a retention (retentionInDays > 0); 0 keeps logs forever.", None)
    elif args.resource_type == LAMBDA:
        logging = plain(props.get("loggingConfig")) or {}
        if not logging.get("logGroup"):
            report(
                "functions log to a log group created with a retention (loggingConfig.logGroup); "
                "Lambda's implicit /aws/lambda/<name> group never expires.",
                None,
            )


log_retention = ResourceValidationPolicy(
    name="log-retention-set",
    description="Every log group has a retention; every function logs to such a group.",
    validate=validate_log_retention,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ RDS


def validate_rds(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    props = args.props
    if props.get("publiclyAccessible") is not False:
        report("the database must not be publicly accessible (publiclyAccessible: false).", None)
    if props.get("storageEncrypted") is not True:
        report("the database must be encrypted at rest (storageEncrypted: true).", None)
    production = _config_list(args, "productionStacks", DEFAULT_PRODUCTION_STACKS)
    stack = stack_of(args.urn)
    if stack in production:
        if props.get("deletionProtection") is not True:
            report(f"in {stack} the database needs deletionProtection: true.", None)
        if not args.opts.protect:
            report(f"in {stack} the database needs the Pulumi `protect` option.", None)


rds_private_encrypted_protected = ResourceValidationPolicy(
    name="rds-private-encrypted-protected",
    description="RDS is private and encrypted; in production stacks deletion-protected and "
    "Pulumi-protected.",
    validate=validate_rds,
    enforcement_level=MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "productionStacks": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(DEFAULT_PRODUCTION_STACKS),
            }
        }
    ),
)


# ------------------------------------------------------------------ bucket public access


def validate_public_access_block(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != PUBLIC_ACCESS_BLOCK:
        return
    off = [s for s in PUBLIC_ACCESS_SWITCHES if args.props.get(s) is not True]
    if off:
        report(f"every public-access switch must be on; off: {', '.join(off)}.", None)


bucket_public_access_block = ResourceValidationPolicy(
    name="bucket-public-access-blocked",
    description="A bucket's public access block turns on all four switches.",
    validate=validate_public_access_block,
    enforcement_level=MANDATORY,
)


def validate_every_bucket_blocked(args: StackValidationArgs, report: ReportViolation) -> None:
    blocked: set[str] = set()
    for block in args.resources:
        if block.resource_type != PUBLIC_ACCESS_BLOCK:
            continue
        if all(known(lambda b=block, s=s: b.props.get(s)) is True for s in PUBLIC_ACCESS_SWITCHES):
            bucket = known(lambda b=block: b.props.get("bucket"))
            if isinstance(bucket, str):
                blocked.add(bucket)
    for bucket in args.resources:
        if bucket.resource_type not in BUCKETS:
            continue
        names = {known(lambda b=bucket, k=k: b.props.get(k)) for k in ("id", "bucket")}
        if not (names & blocked):
            report(
                f"bucket {bucket.name} has no public access block with every switch on.", bucket.urn
            )


every_bucket_blocked = StackValidationPolicy(
    name="every-bucket-public-access-blocked",
    description="Every bucket has a public access block with all four switches on.",
    validate=validate_every_bucket_blocked,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ IAM


def validate_no_wildcard_actions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for document in policy_documents(args.resource_type, args.props):
        for problem in wildcard_allows(document):
            report(f"{problem}: grant the exact actions a principal needs.", None)


no_wildcard_iam = ResourceValidationPolicy(
    name="no-wildcard-iam-actions",
    description="No IAM or resource policy allows a wildcard action (or NotAction).",
    validate=validate_no_wildcard_actions,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ API routes


def validate_route_authorizer(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROUTE:
        return
    props = args.props
    route = props.get("routeKey")
    public = _config_list(args, "publicRoutes", DEFAULT_PUBLIC_ROUTES)
    if route in public:
        return
    kind = props.get("authorizationType") or "NONE"
    if kind not in AUTHORIZED_TYPES:
        report(
            f"route {route!r} is not in the public list {list(public)} and has no authorizer "
            f"(authorizationType {kind!r}).",
            None,
        )
    elif kind in ("JWT", "CUSTOM") and not props.get("authorizerId"):
        report(f"route {route!r} uses {kind} authorization without an authorizerId.", None)


route_authorizer = ResourceValidationPolicy(
    name="authorizer-on-non-public-routes",
    description="Every API route outside the public list requires an authorizer.",
    validate=validate_route_authorizer,
    enforcement_level=MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "publicRoutes": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(DEFAULT_PUBLIC_ROUTES),
            }
        }
    ),
)


# ------------------------------------------------------------------ encryption at rest

QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)


def validate_queue_topic_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == QUEUE:
        if props.get("sqsManagedSseEnabled") is not True and not props.get("kmsMasterKeyId"):
            report(
                "queues are encrypted at rest: sqsManagedSseEnabled: true or a kmsMasterKeyId "
                "(dead-lettered events carry user data).",
                None,
            )
    elif args.resource_type == TOPIC and not props.get("kmsMasterKeyId"):
        report(
            "topics are encrypted with a customer-managed KMS key (kmsMasterKeyId) whose policy "
            "lets the publisher (CloudWatch) use it.",
            None,
        )


queue_topic_encryption = ResourceValidationPolicy(
    name="queues-and-topics-encrypted",
    description="SQS queues and SNS topics are encrypted at rest.",
    validate=validate_queue_topic_encryption,
    enforcement_level=MANDATORY,
)


def validate_every_bucket_encrypted(args: StackValidationArgs, report: ReportViolation) -> None:
    encrypted: set[str] = set()
    for config in args.resources:
        if config.resource_type not in BUCKET_ENCRYPTION:
            continue
        rules_ = known(lambda c=config: as_list(c.props.get("rules")), [])
        algorithms = {
            ((plain(r) or {}).get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for r in rules_
        }
        bucket = known(lambda c=config: c.props.get("bucket"))
        if isinstance(bucket, str) and algorithms & {"AES256", "aws:kms", "aws:kms:dsse"}:
            encrypted.add(bucket)
    for bucket in args.resources:
        if bucket.resource_type not in BUCKETS:
            continue
        names = {known(lambda b=bucket, k=k: b.props.get(k)) for k in ("id", "bucket")}
        if not (names & encrypted):
            report(f"bucket {bucket.name} has no server-side encryption configuration.", bucket.urn)


every_bucket_encrypted = StackValidationPolicy(
    name="every-bucket-encrypted",
    description="Every bucket has a default server-side encryption configuration.",
    validate=validate_every_bucket_encrypted,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ IAM Resource "*"

IDENTITY_POLICY_TYPES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
    "aws:iam/role:Role",
)
# Actions AWS authorizes only on "*" (no resource-level permissions): X-Ray segments, and the
# network-interface actions Lambda performs for a function in a VPC. Nothing else may be "*".
DEFAULT_WILDCARD_RESOURCE_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


def validate_resource_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in IDENTITY_POLICY_TYPES:
        return
    allowed = set(_config_list(args, "wildcardResourceActions", DEFAULT_WILDCARD_RESOURCE_ACTIONS))
    for document in policy_documents(args.resource_type, args.props):
        for i, statement in enumerate(as_list(document.get("Statement"))):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid") or f"#{i}"
            if "NotResource" in statement:
                report(f"statement {sid} allows NotResource (everything but a list).", None)
            if "*" not in as_list(statement.get("Resource")):
                continue
            extra = sorted(set(as_list(statement.get("Action"))) - allowed)
            if extra:
                report(
                    f'statement {sid} grants {extra} on Resource "*": name the resources; only '
                    f"{sorted(allowed)} have no resource-level permissions.",
                    None,
                )


iam_resource_wildcards = ResourceValidationPolicy(
    name="no-wildcard-iam-resources",
    description='IAM policies grant on Resource "*" only the actions AWS cannot scope.',
    validate=validate_resource_wildcards,
    enforcement_level=MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "wildcardResourceActions": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(DEFAULT_WILDCARD_RESOURCE_ACTIONS),
            }
        }
    ),
)


# ------------------------------------------------------------------ secrets

PARAMETER = "aws:ssm/parameter:Parameter"
STACK = "pulumi:pulumi:Stack"
# Variable names that would hold a secret value; names of references to one end in a suffix.
SECRET_NAME = re.compile(r"(KEY|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?)$", re.IGNORECASE)
REFERENCE_SUFFIX = re.compile(r"_(PARAM|ARN|NAME|ID|URL)$", re.IGNORECASE)


def validate_secure_parameters(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != PARAMETER:
        return
    props = args.props
    kind = props.get("type")
    name = str(plain(props.get("name")) or "")
    looks_secret = bool(SECRET_NAME.search(name.rsplit("/", 1)[-1]))
    if (isinstance(props.get("value"), Secret) or looks_secret) and kind != "SecureString":
        report(
            f"parameter {name or args.name} holds a secret: it must be a SecureString "
            f"(got {kind!r}); a String parameter is readable by anyone with ssm:GetParameter.",
            None,
        )


secure_parameters = ResourceValidationPolicy(
    name="secrets-are-securestring",
    description="SSM parameters holding secrets are SecureString.",
    validate=validate_secure_parameters,
    enforcement_level=MANDATORY,
)


def validate_no_secret_exposed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == LAMBDA:
        environment = plain(props.get("environment")) or {}
        variables = plain(environment.get("variables")) or {}
        for key, value in variables.items():
            if isinstance(value, Secret):
                report(f"environment variable {key} carries a secret value.", None)
            elif SECRET_NAME.search(key) and not REFERENCE_SUFFIX.search(key):
                report(
                    f"environment variable {key} looks like a secret: pass the name of an SSM "
                    "SecureString parameter or a secret's ARN (…_PARAM, …_ARN) and read it at "
                    "run time.",
                    None,
                )
    elif args.resource_type == STACK:
        for key, value in props.items():
            if isinstance(value, Secret):
                report(f"stack output {key} is a secret: outputs carry identifiers only.", None)


no_secret_exposed = ResourceValidationPolicy(
    name="no-secret-in-environment-or-outputs",
    description="No secret in a function's environment or in the stack's outputs.",
    validate=validate_no_secret_exposed,
    enforcement_level=MANDATORY,
)


# ------------------------------------------------------------------ names and protection


def validate_function_auto_named(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == LAMBDA and props_has(args.props, "name"):
        report(
            f"function name {args.props.get('name')!r} is fixed: a replacement (architecture, "
            "package type) could not be created before the old one is deleted. Leave it "
            "auto-named.",
            None,
        )


def props_has(props: Mapping[str, Any], key: str) -> bool:
    value = props.get(key)
    return value is not None and value != ""


function_auto_named = ResourceValidationPolicy(
    name="no-fixed-function-names",
    description="Lambda functions are auto-named (create-before-delete on replacement).",
    validate=validate_function_auto_named,
    enforcement_level=MANDATORY,
)

STATEFUL_TYPES = (
    RDS_INSTANCE,
    *BUCKETS,
    "aws:cognito/userPool:UserPool",
    "aws:dynamodb/table:Table",
)


def validate_stateful_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in STATEFUL_TYPES:
        return
    production = _config_list(args, "productionStacks", DEFAULT_PRODUCTION_STACKS)
    stack = stack_of(args.urn)
    if stack in production and not args.opts.protect:
        report(
            f"in {stack} every stateful resource is Pulumi-protected (`protect`): a replacement "
            "or a deletion would lose its data.",
            None,
        )


stateful_protected = ResourceValidationPolicy(
    name="stateful-resources-protected-in-production",
    description="Databases, buckets, user pools and tables are `protect`ed in production.",
    validate=validate_stateful_protected,
    enforcement_level=MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "productionStacks": {
                "type": "array",
                "items": {"type": "string"},
                "default": list(DEFAULT_PRODUCTION_STACKS),
            }
        }
    ),
)


# ------------------------------------------------------------------ authorizer audience

AUTHORIZER = "aws:apigatewayv2/authorizer:Authorizer"
COGNITO_ISSUER = re.compile(
    r"^https://cognito-idp\.[a-z0-9-]+\.amazonaws\.com/[\w-]+_[0-9A-Za-z]+$"
)


def validate_authorizer_audience(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != AUTHORIZER or args.props.get("authorizerType") != "JWT":
        return
    config = plain(args.props.get("jwtConfiguration")) or {}
    audiences = [a for a in as_list(config.get("audiences")) if a]
    if not audiences or any(a == "*" for a in audiences):
        report(
            "a JWT authorizer names its audience (the app client id): without it a token "
            "issued by the pool to any client is accepted.",
            None,
        )
    issuer = config.get("issuer")
    if not (isinstance(issuer, str) and COGNITO_ISSUER.match(issuer)):
        report(
            f"JWT issuer {issuer!r} is not a Cognito user pool "
            "(https://cognito-idp.<region>.amazonaws.com/<pool id>).",
            None,
        )


authorizer_audience = ResourceValidationPolicy(
    name="jwt-authorizer-audience",
    description="JWT authorizers check the user pool's issuer and the app client's audience.",
    validate=validate_authorizer_audience,
    enforcement_level=MANDATORY,
)


RESOURCE_POLICIES: list[ResourceValidationPolicy] = [
    image_by_digest,
    image_platform,
    async_targets_dlq,
    log_retention,
    rds_private_encrypted_protected,
    bucket_public_access_block,
    no_wildcard_iam,
    route_authorizer,
    queue_topic_encryption,
    iam_resource_wildcards,
    secure_parameters,
    no_secret_exposed,
    function_auto_named,
    stateful_protected,
    authorizer_audience,
]
STACK_POLICIES: list[StackValidationPolicy] = [
    architecture_matches_platform,
    async_functions_destination,
    every_bucket_blocked,
    every_bucket_encrypted,
]
POLICIES = [*RESOURCE_POLICIES, *STACK_POLICIES]
