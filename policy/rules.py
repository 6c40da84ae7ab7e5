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


RESOURCE_POLICIES: list[ResourceValidationPolicy] = [
    image_by_digest,
    image_platform,
    async_targets_dlq,
    log_retention,
    rds_private_encrypted_protected,
    bucket_public_access_block,
    no_wildcard_iam,
    route_authorizer,
]
STACK_POLICIES: list[StackValidationPolicy] = [
    architecture_matches_platform,
    async_functions_destination,
    every_bucket_blocked,
]
POLICIES = [*RESOURCE_POLICIES, *STACK_POLICIES]
