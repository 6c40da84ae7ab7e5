"""Release engineering: the replacement policy, stable URNs of stateful resources, stack
references (image promotion, an existing network), and the preconditions that make the
predecessor's failure impossible.

The predecessor replaced two Lambda functions (zip -> image); their ARNs were CloudFormation
exports imported by another stack, so the update was refused and the fix destroyed the user pool.
Here nothing outside the graph imports a function, and these tests pin down why a replaced
function cannot lock anything: every function is auto-named, and every resource that refers to
one takes the value from that function's outputs in the same program.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pulumi
import pytest
from infra_harness import (
    FAKE_SECRETS,
    ORGANIZATION,
    STACK_REFERENCE_TYPE,
    Deployment,
    Res,
    alias_urns,
    check_urns,
    deployment_for,
    engine_urn,
    run_program,
    stack_config_with_secrets,
    urn_template,
)

import infra.components.storage as storage_module
from infra import options
from infra.components.secrets import GENERATED, KEPT_AFTER_CREATION, generated_parameter_options
from infra.config import parse
from infra.options import (
    ALIASES,
    POLICY,
    REPLACE_ON_CHANGES,
    RESOURCE_TYPES,
    Kind,
    OptionSpec,
    component_options,
    options_for,
    spec_for,
)
from infra.references import (
    StackOutputError,
    check_output,
    equals,
    is_digest,
    is_repository_url,
    is_vpc_id,
    qualified_stack_name,
    subnet_ids,
)
from runtime.topology import FUNCTIONS, images

HERE = Path(__file__).resolve().parent
STATEFUL_URNS = json.loads((HERE / "stateful_urns.json").read_text())["urns"]
STATEFUL = sorted(k for k, kind in POLICY.items() if kind is Kind.STATEFUL)
STATEFUL_TYPES = {RESOURCE_TYPES[k] for k in STATEFUL}
STACKS = ("dev", "prod")

LAMBDA = "aws:lambda/function:Function"
IMAGE = "docker-build:index:Image"
# Function outputs other resources may refer to.
FUNCTION_OUTPUTS = ("name", "arn", "invokeArn", "qualifiedArn")
# Every kind of resource that refers to a function (the list, plus the async invoke
# config and the migration invocation).
FUNCTION_DEPENDENTS = {
    "aws:apigatewayv2/integration:Integration",
    "aws:lambda/permission:Permission",
    "aws:cloudwatch/eventTarget:EventTarget",
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:cloudwatch/dashboard:Dashboard",
    "aws:lambda/invocation:Invocation",
    "aws:lambda/eventSourceMapping:EventSourceMapping",
}


def stack_protect(stack: str) -> bool:
    """What the committed stack file says (`collections:protect`)."""
    return parse(stack_config_with_secrets(stack), stack=stack, secret_keys=None).protect


def run(label: str, stack: str = "dev", **kwargs: Any) -> Deployment:
    overrides = kwargs.pop("overrides", {})
    return run_program(
        stack_config_with_secrets(stack) | overrides,
        preview=kwargs.pop("preview", False),
        stack=stack,
        secret_keys=list(FAKE_SECRETS),
        label=label,
        **kwargs,
    )


def key_of(r: Res) -> str | None:
    """The replacement-policy entry of a registered resource (None: not in the table)."""
    keys = [key for key, typ in RESOURCE_TYPES.items() if typ == r.type]
    if len(keys) > 1:  # several entries of one type (the DynamoDB tables): by name
        keys = [key for key in keys if r.name.endswith("-" + key.removesuffix("-table"))]
    assert len(keys) <= 1, (r.urn, keys)
    return keys[0] if keys else None


# =================================================================== replacement policy (unit)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("resource", STATEFUL)
def test_stateful_resources_are_protected_and_retained_per_stack(stack: str, resource: str) -> None:
    protect = stack_protect(stack)
    assert protect is (stack == "prod")  # the committed stack files: on in prod only
    spec = spec_for(resource, protect=protect)
    assert spec == OptionSpec(protect=protect, retain_on_delete=protect)
    opts = options_for(resource, protect=protect)
    assert bool(opts.protect) is protect
    assert bool(opts.retain_on_delete) is protect
    assert not opts.delete_before_replace
    assert not opts.replace_on_changes, "a replacement of a store is a new, empty store"


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("resource", ["ssm-parameter", "dashboard"])
def test_fixed_name_resources_delete_before_replace_per_stack(stack: str, resource: str) -> None:
    opts = options_for(resource, protect=stack_protect(stack))
    assert opts.delete_before_replace is True
    assert not opts.protect and not opts.retain_on_delete


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("resource", ["function", "migration-invocation", "role", "queue"])
def test_auto_named_resources_create_before_delete_per_stack(stack: str, resource: str) -> None:
    opts = options_for(resource, protect=stack_protect(stack))
    assert not opts.delete_before_replace and not opts.protect and not opts.retain_on_delete


@pytest.mark.parametrize(
    ("resource", "properties"),
    [
        ("ssm-parameter", ["type", "keyId"]),
        ("function", ["packageType"]),
        ("migration-invocation", ["input", "triggers"]),
        ("dashboard", None),
        ("database", None),
    ],
)
def test_replace_on_changes_where_in_place_would_be_wrong(
    resource: str, properties: list[str] | None
) -> None:
    assert options_for(resource, protect=True).replace_on_changes == properties
    for key in REPLACE_ON_CHANGES:
        assert POLICY[key] is not Kind.STATEFUL, key


def test_aliases_from_the_table_reach_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    alias = pulumi.Alias(name="old-bucket")
    monkeypatch.setitem(ALIASES, "storage-bucket", (alias,))
    monkeypatch.setitem(ALIASES, "store", (pulumi.Alias(name="storage"),))
    opts = options_for("bucket", protect=True, name="storage-bucket")
    assert opts.aliases == [alias] and opts.protect and opts.retain_on_delete
    assert options_for("bucket", protect=True, name="other").aliases is None
    store_aliases = component_options("store").aliases
    assert store_aliases is not None and store_aliases[0].name == "storage"
    assert component_options("storage").aliases is None


@pytest.mark.parametrize("label", ["dev-update", "prod-update"])
def test_what_the_engine_receives_is_the_table(label: str) -> None:
    """Every registration of a type in the table carries exactly the table's options."""
    d = deployment_for(label)
    protect = stack_protect(label.split("-")[0])
    seen: set[str] = set()
    for r in d.resources:
        key = key_of(r)
        if key is None:
            continue
        seen.add(key)
        spec = spec_for(key, protect=protect)
        assert r.protect is spec.protect, r.urn
        assert r.retain_on_delete is spec.retain_on_delete, r.urn
        assert r.delete_before_replace is spec.delete_before_replace, r.urn
        assert r.replace_on_changes == list(spec.replace_on_changes), r.urn
    assert seen == set(RESOURCE_TYPES), "a table entry matches nothing the program creates"


def test_every_alias_key_names_a_resource_of_the_program() -> None:
    names = {r.name for r in deployment_for("dev-update").resources}
    assert set(ALIASES) <= names, "an alias under a name nothing has is silently ignored"


# =================================================================== stable URNs


def test_committed_urns_cover_every_stateful_type() -> None:
    assert {u.split("::")[2].split("$")[-1] for u in STATEFUL_URNS} == STATEFUL_TYPES
    assert len(STATEFUL_URNS) == len(set(STATEFUL_URNS))


@pytest.mark.parametrize("label", ["dev-preview", "dev-update", "prod-update"])
def test_stateful_urns_match_the_committed_list(label: str) -> None:
    d = deployment_for(label)
    stack = label.split("-")[0]
    assert check_urns(d.resources, STATEFUL_URNS, stack=stack, types=STATEFUL_TYPES) == []
    found = sorted(urn_template(r.urn, stack) for r in d.resources if r.type in STATEFUL_TYPES)
    assert found == sorted(STATEFUL_URNS)


def test_urns_are_the_engines_top_level_resources_have_no_stack_prefix() -> None:
    d = deployment_for("dev-update")
    (storage,) = [r for r in d.resources if r.type == "collections:storage:Storage"]
    assert storage.urn == "urn:pulumi:dev::collections::collections:storage:Storage::storage"


class _RenamedStorage(storage_module.Storage):
    """The storage component renamed "storage" -> "store" (as an edit of __main__ would)."""

    def __init__(self, name: str, *args: Any, opts: Any = None, **kwargs: Any) -> None:
        super().__init__("store", *args, opts=component_options("store"), **kwargs)


def test_a_rename_without_an_alias_fails_and_with_one_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage_module, "Storage", _RenamedStorage)
    renamed = run("renamed", preview=True)
    problems = check_urns(renamed.resources, STATEFUL_URNS, stack="dev", types=STATEFUL_TYPES)
    text = "\n".join(problems)
    assert len(problems) == 6, text  # bucket and tables: each new URN, each vanished URN
    assert "Storage$aws:s3/bucket:Bucket::store-bucket is not in" in text
    assert "Storage$aws:s3/bucket:Bucket::storage-bucket (tests/infra" in text
    assert "Storage$aws:dynamodb/table:Table::store-idempotency is not in" in text
    assert "Storage$aws:dynamodb/table:Table::store-conversations is not in" in text

    monkeypatch.setitem(ALIASES, "store", (pulumi.Alias(name="storage"),))
    aliased = run("renamed-aliased", preview=True)
    assert check_urns(aliased.resources, STATEFUL_URNS, stack="dev", types=STATEFUL_TYPES) == []
    (bucket,) = aliased.of_type("aws:s3/bucket:Bucket")
    assert bucket.urn.endswith("::store-bucket")
    by_urn = {r.urn: r for r in aliased.resources}
    assert (
        "urn:pulumi:dev::collections::collections:storage:Storage$aws:s3/bucket:Bucket::"
        "storage-bucket" in alias_urns(bucket, by_urn)
    )


def _res(urn: str, *, parent: str = "", aliases: list[dict[str, Any]] | None = None) -> Res:
    parts = urn.split("::")
    return Res(
        urn=urn,
        type=parts[2].split("$")[-1],
        name=parts[3],
        id="",
        inputs={},
        state={},
        parent=parent,
        custom=True,
        dependencies=set(),
        property_dependencies={},
        protect=False,
        retain_on_delete=False,
        delete_before_replace=False,
        aliases=aliases or [],
    )


def _spec() -> dict[str, Any]:
    return {"name": "", "type": "", "stack": "", "project": "", "parentUrn": "", "noParent": False}


def test_a_reparent_is_accepted_only_with_an_alias_to_the_old_parent() -> None:
    """The bucket moved from the storage component to the top level."""
    stack_urn = "urn:pulumi:dev::collections::pulumi:pulumi:Stack::collections-dev"
    storage = "urn:pulumi:dev::collections::collections:storage:Storage::storage"
    committed = [
        "urn:pulumi:{stack}::collections::collections:storage:Storage$aws:s3/bucket:Bucket::"
        "storage-bucket"
    ]
    moved = engine_urn("dev", "collections", stack_urn, "aws:s3/bucket:Bucket", "storage-bucket")
    assert moved == "urn:pulumi:dev::collections::aws:s3/bucket:Bucket::storage-bucket"
    types = {"aws:s3/bucket:Bucket"}
    bare = _res(moved, parent=stack_urn)
    assert len(check_urns([bare], committed, stack="dev", types=types)) == 2
    aliased = _res(moved, parent=stack_urn, aliases=[_spec() | {"parentUrn": storage}])
    assert check_urns([aliased], committed, stack="dev", types=types) == []
    # An alias to anything else (here: a different old name) does not count.
    wrong = _res(
        moved, parent=stack_urn, aliases=[_spec() | {"parentUrn": storage, "name": "bucket"}]
    )
    assert len(check_urns([wrong], committed, stack="dev", types=types)) == 2


def test_a_vanished_stateful_resource_fails() -> None:
    d = deployment_for("dev-update")
    without_pool = [r for r in d.resources if r.type != "aws:cognito/userPool:UserPool"]
    (problem,) = check_urns(without_pool, STATEFUL_URNS, stack="dev", types=STATEFUL_TYPES)
    assert "auth-users" in problem and "is gone" in problem


# =================================================================== stack references (unit)


def test_stack_names_may_be_short_for_this_project() -> None:
    assert qualified_stack_name("dev", organization="acme", project="collections") == (
        "acme/collections/dev"
    )
    assert qualified_stack_name("org/net/prod", organization="acme", project="x") == "org/net/prod"


@pytest.mark.parametrize(
    ("outputs", "check", "message"),
    [
        ({}, None, "has no output 'imageDigest'"),
        ({"imageDigest": None}, None, "has no output 'imageDigest'"),
        ({"imageDigest": "latest"}, is_digest, "is not an image digest"),
        ({"imageDigest": "sha256:" + "a" * 64}, is_digest, None),
    ],
)
def test_check_output_names_the_stack_the_output_and_the_fix(
    outputs: dict[str, Any], check: Any, message: str | None
) -> None:
    kwargs = {
        "stack": "acme/collections/dev",
        "output": "imageDigest",
        "setting": "imagesFromStack",
    }
    if message is None:
        assert check_output(outputs, check=check, **kwargs) == outputs["imageDigest"]
        return
    with pytest.raises(StackOutputError) as caught:
        check_output(outputs, check=check, **kwargs)
    text = str(caught.value)
    assert message in text
    assert "Stack 'acme/collections/dev'" in text
    assert "collections:imagesFromStack" in text
    if "has no output" in message:
        assert "Fix: run `pulumi up --stack acme/collections/dev`" in text
    else:
        assert "Fix: make the two stacks agree" in text


def test_value_checks() -> None:
    assert is_repository_url("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo") is None
    assert is_repository_url("repo:latest") is not None
    assert is_vpc_id("vpc-0abc") is None and is_vpc_id("subnet-1") is not None
    assert subnet_ids(2)(["subnet-a", "subnet-b"]) is None
    assert "at least 2" in (subnet_ids(2)(["subnet-a"]) or "")
    assert subnet_ids(2)("subnet-a") is not None
    assert equals("linux/arm64", "x")("linux/arm64") is None
    assert "'linux/amd64'" in (equals("linux/arm64", "x")("linux/amd64") or "")


# =================================================================== image promotion


@pytest.mark.parametrize("label", ["prod-preview", "prod-update"])
def test_prod_promotes_devs_image_by_digest_without_building(label: str) -> None:
    dev, prod = deployment_for("dev-update"), deployment_for(label)
    assert not prod.of_type(IMAGE), "a promoting stack builds nothing"
    assert not prod.of_type("aws:ecr/repository:Repository")
    assert not prod.calls, "no ECR token, no build: nothing invoked"
    (read,) = prod.reads
    assert read.type == STACK_REFERENCE_TYPE
    assert read.id == f"{ORGANIZATION}/collections/dev"
    expected = {
        name: f"{dev.outputs['imageRepositoryUrl']}@{digest}"
        for name, digest in dev.outputs["imageDigests"].items()
    }
    assert expected == dev.outputs["imageUris"]
    assert len(set(expected.values())) == len(images())  # a set of distinct images
    functions = {f.name.removeprefix("functions-"): f for f in prod.of_type(LAMBDA)}
    assert len(functions) == len(FUNCTIONS)
    for fn in FUNCTIONS:
        assert functions[fn.name].inputs["imageUri"] == expected[fn.image], fn.name
        assert functions[fn.name].inputs["packageType"] == "Image"
    assert prod.outputs["imageDigests"] == dev.outputs["imageDigests"]
    assert prod.outputs["imageUris"] == expected
    assert prod.outputs["imageSourceStack"] == f"{ORGANIZATION}/collections/dev"


def test_a_building_stack_reads_no_other_stack() -> None:
    dev = deployment_for("dev-update")
    assert dev.reads == []
    assert len(dev.of_type(IMAGE)) == len(images())
    assert dev.outputs["imagePlatform"] == "linux/arm64"


@pytest.mark.parametrize("preview", [True, False])
def test_a_missing_image_output_fails_naming_the_stack_and_output(preview: bool) -> None:
    outputs = dict(deployment_for("dev-update").outputs)
    del outputs["imageDigests"]
    with pytest.raises(StackOutputError) as caught:
        run(
            "missing-digest",
            "prod",
            preview=preview,
            stack_outputs={f"{ORGANIZATION}/collections/dev": outputs},
        )
    assert caught.value.stack == "acme/collections/dev"
    assert caught.value.output == "imageDigests"
    assert "Stack 'acme/collections/dev' has no output 'imageDigests'" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("thumbnail"), "has no digest for the image(s) thumbnail"),
        (lambda d: d.update(embed="latest"), "['embed'] is not an image digest"),
    ],
    ids=["image-missing", "not-a-digest"],
)
def test_promoting_an_incomplete_image_set_fails(change: Any, message: str) -> None:
    """Every image this stack's functions run must come from the source stack, by digest."""
    outputs = dict(deployment_for("dev-update").outputs)
    digests = dict(outputs["imageDigests"])
    change(digests)
    outputs["imageDigests"] = digests
    with pytest.raises(StackOutputError) as caught:
        run("incomplete", "prod", stack_outputs={f"{ORGANIZATION}/collections/dev": outputs})
    assert caught.value.output == "imageDigests"
    assert message in str(caught.value)


def test_promoting_an_image_built_for_another_architecture_fails() -> None:
    x86_outputs = deployment_for("dev-x86_64").outputs
    assert x86_outputs["imagePlatform"] == "linux/amd64"
    with pytest.raises(StackOutputError) as caught:
        run("wrong-arch", "prod", stack_outputs={f"{ORGANIZATION}/collections/dev": x86_outputs})
    assert caught.value.output == "imagePlatform"
    assert "is 'linux/amd64', but this stack's functions run on arm64" in str(caught.value)


def test_promoting_from_another_region_fails() -> None:
    outputs = dict(deployment_for("dev-update").outputs) | {"region": "eu-west-1"}
    with pytest.raises(StackOutputError, match="output 'region' is 'eu-west-1'"):
        run("wrong-region", "prod", stack_outputs={f"{ORGANIZATION}/collections/dev": outputs})


def test_image_pull_accounts_get_a_pull_only_repository_policy() -> None:
    d = run("pull", overrides={"collections:imagePullAccounts": '["210987654321"]'})
    (policy,) = d.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    (repo,) = d.of_type("aws:ecr/repository:Repository")
    assert policy.inputs["repository"] == repo.state["name"]
    doc = json.loads(policy.inputs["policy"])
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert doc["Statement"][0]["Principal"] == {"AWS": ["arn:aws:iam::210987654321:root"]}
    assert doc["Statement"][1]["Condition"] == {
        "StringLike": {"aws:sourceARN": ["arn:aws:lambda:us-east-1:210987654321:function:*"]}
    }
    assert not deployment_for("dev-update").of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")


# =================================================================== existing network


NETWORK_STACK = "acme/network/shared"
NETWORK_OUTPUTS = {
    "vpcId": "vpc-0shared",
    "privateSubnetIds": ["subnet-shared-priv-a", "subnet-shared-priv-b"],
    "isolatedSubnetIds": ["subnet-shared-iso-a", "subnet-shared-iso-b"],
}


def test_network_stack_is_read_not_created() -> None:
    d = run(
        "shared-network",
        overrides={"collections:networkStack": NETWORK_STACK},
        stack_outputs={NETWORK_STACK: NETWORK_OUTPUTS},
    )
    assert not d.of_type("awsx:ec2:Vpc"), "no VPC is created"
    assert [r.id for r in d.reads] == [NETWORK_STACK]
    sgs = d.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert sgs and all(sg.inputs["vpcId"] == "vpc-0shared" for sg in sgs)
    (subnet_group,) = d.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert subnet_group.inputs["subnetIds"] == NETWORK_OUTPUTS["isolatedSubnetIds"]
    in_vpc = [f for f in d.of_type(LAMBDA) if "vpcConfig" in f.inputs]
    assert in_vpc
    for f in in_vpc:
        assert f.inputs["vpcConfig"]["subnetIds"] == NETWORK_OUTPUTS["privateSubnetIds"]
    # The stateful resources keep their URNs whichever network they sit in.
    assert check_urns(d.resources, STATEFUL_URNS, stack="dev", types=STATEFUL_TYPES) == []


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            {k: v for k, v in NETWORK_OUTPUTS.items() if k != "isolatedSubnetIds"},
            "has no output 'isolatedSubnetIds'",
        ),
        (
            NETWORK_OUTPUTS | {"privateSubnetIds": ["subnet-only-one"]},
            "output 'privateSubnetIds' lists 1 subnet(s)",
        ),
    ],
    ids=["missing", "one-subnet"],
)
def test_a_missing_or_wrong_network_output_fails_clearly(
    outputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(StackOutputError) as caught:
        run(
            "bad-network",
            preview=True,
            overrides={"collections:networkStack": NETWORK_STACK},
            stack_outputs={NETWORK_STACK: outputs},
        )
    text = str(caught.value)
    assert f"Stack {NETWORK_STACK!r}" in text and message in text
    assert "collections:networkStack" in text


# =================================================================== the predecessor's failure


@pytest.mark.parametrize("label", ["dev-update", "prod-update"])
def test_every_function_is_auto_named(label: str) -> None:
    """No fixed name: a replacement can exist next to the function it replaces."""
    for f in deployment_for(label).of_type(LAMBDA):
        assert "name" not in f.inputs, f.name


@pytest.fixture(scope="module")
def salted() -> Deployment:
    """Functions with unguessable names and ARNs (a fresh salt per run)."""
    return run("salted-arm64", function_salt=uuid.uuid4().hex)


@pytest.fixture(scope="module")
def salted_x86() -> Deployment:
    """The same stack on x86_64 (a new image), every function with new unguessable outputs."""
    return run(
        "salted-x86_64",
        overrides={"collections:architecture": "x86_64"},
        function_salt=uuid.uuid4().hex,
    )


def functions_by_name(d: Deployment) -> dict[str, Res]:
    return {f.name.removeprefix("functions-"): f for f in d.of_type(LAMBDA)}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_references_to_functions_are_exactly_the_functions_outputs(salted: Deployment) -> None:
    d = salted
    fns = functions_by_name(d)
    for f in fns.values():
        assert re.search(r"-[0-9a-f]{20}$", f.state["name"]), "the mock's names are unguessable"
    name = {k: f.state["name"] for k, f in fns.items()}
    arn = {k: f.state["arn"] for k, f in fns.items()}

    (integration,) = d.of_type("aws:apigatewayv2/integration:Integration")
    assert integration.inputs["integrationUri"] == arn["api"]
    permissions = d.of_type("aws:lambda/permission:Permission")
    # the dead-letter consumer is polled by event source mappings: no resource policy
    assert sorted(p.inputs["function"] for p in permissions) == sorted(
        name[k] for k in fns if k not in ("migrate", "deadletter")
    )
    mappings = d.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert mappings and {m.inputs["functionName"] for m in mappings} == {arn["deadletter"]}
    targets = d.of_type("aws:cloudwatch/eventTarget:EventTarget")
    configs = d.of_type("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    async_names = {k for k in fns if k not in ("api", "migrate", "deadletter")}
    assert sorted(t.inputs["arn"] for t in targets) == sorted(arn[k] for k in async_names)
    assert sorted(c.inputs["functionName"] for c in configs) == sorted(name[k] for k in async_names)
    alarms = d.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    errors = [a for a in alarms if a.inputs["metricName"] == "Errors"]
    assert sorted(a.inputs["dimensions"]["FunctionName"] for a in errors) == sorted(name.values())
    (dashboard,) = d.of_type("aws:cloudwatch/dashboard:Dashboard")
    rows = [
        m
        for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]
        for m in w["properties"]["metrics"]
        if m[0] == "AWS/Lambda"
    ]
    assert {m[3] for m in rows} == set(name.values())
    (invocation,) = d.of_type("aws:lambda/invocation:Invocation")
    assert invocation.inputs["functionName"] == name["migrate"]

    # Nothing anywhere holds a Lambda ARN or function name the program made up itself.
    issued = sorted(
        (f.state[k] for f in fns.values() for k in FUNCTION_OUTPUTS), key=len, reverse=True
    )
    for r in d.resources:
        if r.type == LAMBDA:
            continue
        for text in _strings(r.inputs):
            rest = text
            for value in issued:
                rest = rest.replace(value, "<function output>")
            assert "arn:aws:lambda:" not in rest, (r.type, r.name, text)
            assert ":function:" not in rest, (r.type, r.name, text)
            for fn in fns:
                assert not re.search(rf"\bcollections-(dev|prod)-{fn}\b", rest), (r.name, text)


def _normalized(d: Deployment) -> dict[str, Any]:
    """Each resource's inputs (by URN) with every function output replaced by a placeholder
    naming the function and the output."""
    placeholders: list[tuple[str, str]] = []
    for f in d.of_type(LAMBDA):
        for key in FUNCTION_OUTPUTS:
            placeholders.append((f.state[key], f"<{f.name}.{key}>"))
    placeholders.sort(key=lambda p: len(p[0]), reverse=True)

    def replace(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in placeholders:
                value = value.replace(old, new)
            return value
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        return value

    return {
        r.urn: {
            k: v
            for k, v in replace(r.inputs).items()
            if k not in _kept_by_the_engine(r.urn, r.inputs)
        }
        for r in d.resources
    }


def _changed(a: Deployment, b: Deployment) -> dict[str, set[str]]:
    """URN -> the input keys whose values differ between two runs (same resources in both)."""
    ia = {r.urn: r.inputs for r in a.resources}
    ib = {r.urn: r.inputs for r in b.resources}
    assert set(ia) == set(ib), set(ia) ^ set(ib)
    changed = {
        urn: {
            k
            for k in ia[urn].keys() | ib[urn].keys()
            if ia[urn].get(k) != ib[urn].get(k) and k not in _kept_by_the_engine(urn, ia[urn])
        }
        for urn in ia
        if ia[urn] != ib[urn]
    }
    return {urn: keys for urn, keys in changed.items() if keys}


def _kept_by_the_engine(urn: str, inputs: dict) -> list[str]:
    """Input keys the program tells the engine to ignore after creation (mocks cannot see it)."""
    if "aws:ssm/parameter:Parameter" in urn and inputs["name"].rsplit("/", 1)[1] in GENERATED:
        return KEPT_AFTER_CREATION
    return []


PINNED_BUILD = {
    "COLLECTIONS_GIT_SHA": "0" * 40,
    "COLLECTIONS_BUILD_TIME": "2026-01-01T00:00:00+00:00",
}


@pytest.fixture(scope="module")
def pinned_baseline() -> Deployment:
    """The dev stack with a fixed commit and build time (the build inputs of the image)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in PINNED_BUILD.items():
            mp.setenv(key, value)
        return run("before")


def _type(d: Deployment, urn: str) -> str:
    return d.by_urn(urn).type


@pytest.mark.parametrize(
    ("label", "overrides", "env", "function_keys", "image_keys"),
    [
        (
            "arch-x86_64",
            {"collections:architecture": "x86_64"},
            {},
            {"architectures", "imageUri"},
            {"platforms"},
        ),
        (
            "new-image",
            {},
            {"COLLECTIONS_GIT_SHA": "f" * 40},
            {"imageUri"},
            {"buildArgs", "tags"},
        ),
    ],
    ids=["architecture", "image"],
)
def test_a_new_architecture_or_image_changes_only_the_functions_and_the_build(
    monkeypatch: pytest.MonkeyPatch,
    pinned_baseline: Deployment,
    label: str,
    overrides: dict[str, str],
    env: dict[str, str],
    function_keys: set[str],
    image_keys: set[str],
) -> None:
    """Updated in place (the function keeps its identity): nothing else changes at all."""
    for key, value in PINNED_BUILD.items():
        monkeypatch.setenv(key, value)
    before = pinned_baseline
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    after = run(label, overrides=overrides)
    changed = _changed(before, after)
    by_type: dict[str, set[str]] = {}
    for urn, keys in changed.items():
        by_type.setdefault(_type(after, urn), set()).update(keys)
    assert by_type == {LAMBDA: function_keys, IMAGE: image_keys}
    assert len([u for u in changed if _type(after, u) == LAMBDA]) == len(FUNCTIONS)


def test_replaced_functions_are_followed_through_their_outputs_only(
    salted: Deployment, salted_x86: Deployment
) -> None:
    """Every function replaced (new name, new ARN) and rebuilt for x86_64: the resources that
    refer to functions change, and only where a function output changed; nothing else does."""
    raw = _changed(salted, salted_x86)
    dependents = {_type(salted_x86, u) for u in raw} - {LAMBDA, IMAGE}
    assert dependents == FUNCTION_DEPENDENTS, "the test must see every kind of reference change"

    a, b = _normalized(salted), _normalized(salted_x86)
    for r in salted_x86.resources:
        if r.type == LAMBDA:
            diff = {
                k for k in a[r.urn].keys() | b[r.urn].keys() if a[r.urn].get(k) != b[r.urn].get(k)
            }
            assert diff == {"architectures", "imageUri"}, (r.name, diff)
        elif r.type == IMAGE:
            assert a[r.urn]["platforms"] != b[r.urn]["platforms"]
        else:
            assert a[r.urn] == b[r.urn], f"{r.type} {r.name} changed other than through outputs"


def test_the_options_module_documents_each_kind() -> None:
    assert set(options.REASONS) == set(Kind)


def test_a_generated_secret_is_never_rotated_by_an_update() -> None:
    """Its value is random at each program run: the engine must keep the one it created."""
    parent = pulumi.ComponentResource("test:index:Parent", "parent")
    opts = generated_parameter_options("secrets-cursorKey", parent)
    assert opts.ignore_changes == ["value"]
