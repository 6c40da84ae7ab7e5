"""The program's plain functions: options, IAM, environment, build inputs, patterns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pulumi
import pytest

from infra import MIGRATIONS_DIR
from infra.build import UNKNOWN, build_info, build_platform, migrations_hash
from infra.components.auth import issuer_url
from infra.components.database import first_secret_arn
from infra.components.events import rule_spec
from infra.components.images import image_uri, lifecycle_policy
from infra.components.secrets import parameter_name
from infra.environment import EVENT_SOURCE, RuntimeRefs, function_environment
from infra.iam import AccessTargets, function_policy, needs_vpc
from infra.options import (
    POLICY,
    Kind,
    OptionSpec,
    function_depends_on,
    runs_before_migrations,
    spec_for,
)
from runtime.config import Settings
from runtime.topology import (
    FUNCTIONS,
    ORIGINAL_KEY_PATTERN,
    Deploy,
    EventType,
    Function,
    Http,
    OnEvent,
    Resource,
    event_functions,
    function,
    uses_database,
)

TARGETS = AccessTargets(
    bucket_arn="arn:aws:s3:::bucket",
    db_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:rds!db",
    db_user_arn_prefix="arn:aws:rds-db:us-east-1:1:dbuser:db-ABC/",
    event_bus_arn="arn:aws:events:us-east-1:1:event-bus/bus",
    idempotency_table_arn="arn:aws:dynamodb:us-east-1:1:table/idem",
    conversations_table_arn="arn:aws:dynamodb:us-east-1:1:table/conversations",
    anthropic_param_arn="arn:aws:ssm:us-east-1:1:parameter/collections/dev/anthropicApiKey",
    voyage_param_arn="arn:aws:ssm:us-east-1:1:parameter/collections/dev/voyageApiKey",
    cursor_param_arn="arn:aws:ssm:us-east-1:1:parameter/collections/dev/cursorKey",
)
LOG_GROUP = "arn:aws:logs:us-east-1:1:log-group:/collections/dev/x"


# ------------------------------------------------------------------ replacement options


@pytest.mark.parametrize("resource", ["database", "bucket", "user-pool", "idempotency-table"])
@pytest.mark.parametrize("protect", [True, False])
def test_stateful_resources_are_protected_and_retained_when_the_stack_says_so(
    resource: str, protect: bool
) -> None:
    assert POLICY[resource] is Kind.STATEFUL
    spec = spec_for(resource, protect=protect)
    assert spec == OptionSpec(protect=protect, retain_on_delete=protect)
    opts = spec.to_options()
    assert bool(opts.protect) is protect
    assert bool(opts.retain_on_delete) is protect
    assert not opts.delete_before_replace


@pytest.mark.parametrize("resource", ["ssm-parameter", "dashboard"])
def test_fixed_name_resources_delete_before_replace(resource: str) -> None:
    spec = spec_for(resource, protect=True)
    assert spec.delete_before_replace is True
    assert not spec.protect and not spec.retain_on_delete
    assert spec.to_options().delete_before_replace is True


def test_everything_else_is_auto_named_create_before_delete() -> None:
    spec = spec_for("role", protect=True)  # not in the table: an auto-named resource
    assert spec == OptionSpec()
    opts = spec.to_options()
    assert not opts.protect and not opts.delete_before_replace and not opts.retain_on_delete


def test_serving_functions_wait_for_the_migrations_and_the_migrator_does_not() -> None:
    gate = object()
    for fn in FUNCTIONS:
        deps = function_depends_on(fn, [gate])  # type: ignore[list-item]
        if isinstance(fn.trigger, Deploy):
            assert runs_before_migrations(fn)
            assert deps == []
        else:
            assert deps == [gate]
    assert sum(isinstance(fn.trigger, Deploy) for fn in FUNCTIONS) == 1


def test_topology_fits_the_limits_of_lambda_eventbridge_and_api_gateway() -> None:
    for fn in FUNCTIONS:
        assert 128 <= fn.memory_mb <= 10240 and 1 <= fn.timeout_s <= 900, fn.name
        if isinstance(fn.trigger, Http):
            assert fn.timeout_s <= 30  # HTTP API integrations time out at 30 s
    for fn in event_functions():
        # Lambda async invoke config: 0-2 retries, 60-21600 s; EventBridge targets allow more.
        assert 0 <= fn.retry.maximum_retry_attempts <= 2, fn.name
        assert 60 <= fn.retry.maximum_event_age_seconds <= 21600, fn.name


# ------------------------------------------------------------------ IAM


def _statements(fn: Function, dlq: str | None = None) -> dict[str, dict]:
    doc = function_policy(fn, TARGETS, log_group_arn=LOG_GROUP, dead_letter_queue_arn=dlq)
    assert doc["Version"] == "2012-10-17"
    return {s["Sid"]: s for s in doc["Statement"]}


def test_thumbnailer_reads_originals_and_writes_derivatives_nothing_else_in_s3() -> None:
    st = _statements(function("thumbnail"), dlq="arn:aws:sqs:us-east-1:1:dlq")
    s3 = {sid: s for sid, s in st.items() if any(a.startswith("s3:") for a in s["Action"])}
    assert s3 == {
        "ReadOriginals": {
            "Sid": "ReadOriginals",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": ["arn:aws:s3:::bucket/users/*/items/*/original"],
        },
        "WriteDerived": {
            "Sid": "WriteDerived",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": ["arn:aws:s3:::bucket/users/*/items/*/derived/*"],
        },
    }
    assert st["OnFailureDestination"]["Resource"] == ["arn:aws:sqs:us-east-1:1:dlq"]
    assert st["Logs"]["Resource"] == [f"{LOG_GROUP}:*"]
    assert "ReadAnthropicKey" not in st and "ReadVoyageKey" not in st
    assert "ReadCursorKey" not in st


def test_only_xray_and_vpc_actions_use_a_wildcard_resource() -> None:
    for fn in FUNCTIONS:
        for s in _statements(fn).values():
            if s["Resource"] == ["*"]:
                assert s["Sid"] in {"Tracing", "VpcNetworkInterfaces"}
            assert not any("*" in a for a in s["Action"])


def test_secret_access_is_declared_access() -> None:
    st = _statements(function("analyze"))
    assert st["ReadAnthropicKey"]["Resource"] == [TARGETS.anthropic_param_arn]
    assert "ReadVoyageKey" not in st and "ReadCursorKey" not in st
    api = _statements(function("api"))
    assert api["ReadCursorKey"] == {
        "Sid": "ReadCursorKey",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter"],
        "Resource": [TARGETS.cursor_param_arn],
    }
    assert st["WriteIdempotency"]["Action"] == [
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]


def test_functions_outside_the_database_get_no_vpc_permissions() -> None:
    fn = Function(
        name="x",
        handler="runtime.handlers.x.handler",
        trigger=OnEvent(detail_types=(EventType.ITEM_INDEXED,)),
        memory_mb=128,
        timeout_s=3,
        writes=frozenset({Resource.EVENTS}),
    )
    assert not needs_vpc(fn)
    st = _statements(fn)
    assert set(st) == {"Logs", "Tracing", "PublishEvents"}


# ------------------------------------------------------------------ environment


def _refs() -> RuntimeRefs:
    return RuntimeRefs(
        stack="dev",
        region="us-east-1",
        db_host="db.example",
        db_port="5432",
        db_name="collections",
        db_secret_arn=TARGETS.db_secret_arn,
        bucket="bucket",
        event_bus_name="bus",
        idempotency_table="idem",
        anthropic_api_key_param="/collections/dev/anthropicApiKey",
        voyage_api_key_param="/collections/dev/voyageApiKey",
        cursor_key_param="/collections/dev/cursorKey",
        cognito_user_pool_id="us-east-1_pool",
        cognito_app_client_id="client",
        anthropic_model="claude-sonnet-4-6",
        voyage_model="voyage-3.5-lite",
        embedding_dimension=1024,
        conversations_table="conversations",
    )


def test_environment_names_are_runtime_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    extra = {"COGNITO_USER_POOL_ID", "COGNITO_APP_CLIENT_ID"}
    for fn in FUNCTIONS:
        env = function_environment(fn, _refs())
        for key in env:
            if key.startswith("POWERTOOLS_"):
                continue
            assert key.startswith("COLLECTIONS_")
            assert key.removeprefix("COLLECTIONS_") in fields | extra, key
        assert all(isinstance(v, str) for v in env.values())


def test_environment_carries_parameter_names_never_values() -> None:
    env = function_environment(function("analyze"), _refs())
    assert env["COLLECTIONS_ANTHROPIC_API_KEY_PARAM"] == "/collections/dev/anthropicApiKey"
    assert "COLLECTIONS_ANTHROPIC_API_KEY" not in env
    assert env["COLLECTIONS_ANALYZER"] == "anthropic"
    assert env["COLLECTIONS_EVENT_SOURCE"] == EVENT_SOURCE == Settings().event_source
    assert "COLLECTIONS_CURSOR_KEY_PARAM" not in env
    api = function_environment(function("api"), _refs())
    assert api["COLLECTIONS_CURSOR_KEY_PARAM"] == "/collections/dev/cursorKey"


def test_only_the_http_function_learns_the_cognito_ids() -> None:
    for fn in FUNCTIONS:
        env = function_environment(fn, _refs())
        has = "COLLECTIONS_COGNITO_USER_POOL_ID" in env
        assert has is isinstance(fn.trigger, Http)


def test_every_database_function_agrees_on_the_vector_width() -> None:
    for fn in FUNCTIONS:
        env = function_environment(fn, _refs())
        if uses_database(fn):
            assert env["COLLECTIONS_EMBEDDING_DIMENSION"] == "1024"


# ------------------------------------------------------------------ build inputs


def test_build_platform_is_the_functions_architecture() -> None:
    assert build_platform("arm64") == "linux/arm64"
    assert build_platform("x86_64") == "linux/amd64"
    with pytest.raises(ValueError, match="no image platform"):
        build_platform("sparc")


def test_build_info_prefers_the_environment_and_is_deterministic(tmp_path: Path) -> None:
    env = {"GITHUB_SHA": "a" * 40, "SOURCE_DATE_EPOCH": "1700000000"}
    info = build_info(tmp_path, env)
    assert info.git_sha == "a" * 40
    assert info.build_time == "2023-11-14T22:13:20+00:00"
    assert info.tag == "a" * 12
    assert build_info(tmp_path, env) == info
    explicit = build_info(tmp_path, {"COLLECTIONS_GIT_SHA": "b" * 40, "GITHUB_SHA": "c" * 40})
    assert explicit.git_sha == "b" * 40


def test_build_info_without_git_or_environment_is_unknown(tmp_path: Path) -> None:
    info = build_info(tmp_path, {})
    assert (info.git_sha, info.build_time, info.tag) == (UNKNOWN, UNKNOWN, "untracked")


def test_migrations_hash_changes_exactly_with_the_migration_set(tmp_path: Path) -> None:
    empty = migrations_hash(tmp_path)
    (tmp_path / "0001_items.py").write_text("revision = '0001'\n")
    one = migrations_hash(tmp_path)
    assert one != empty
    (tmp_path / "notes.txt").write_text("ignored")
    assert migrations_hash(tmp_path) == one
    (tmp_path / "0001_items.py").write_text("revision = '0001'  # changed\n")
    changed = migrations_hash(tmp_path)
    assert changed not in (one, empty)
    assert migrations_hash(MIGRATIONS_DIR) == migrations_hash(MIGRATIONS_DIR)


def test_image_uri_is_a_digest_reference() -> None:
    digest = "sha256:" + "0" * 64
    assert image_uri("1.dkr.ecr.us-east-1.amazonaws.com/r", digest).endswith("/r@" + digest)
    with pytest.raises(ValueError):
        image_uri("repo", "latest")


def test_a_preview_without_a_digest_yields_an_unknown_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.components import images

    async def check() -> None:
        monkeypatch.setattr(images.pulumi.runtime, "is_dry_run", lambda: True)
        out = images.digest_reference("repo", "")
        assert isinstance(out, pulumi.Output)
        assert await out.is_known() is False
        monkeypatch.setattr(images.pulumi.runtime, "is_dry_run", lambda: False)
        with pytest.raises(ValueError, match="not an image digest"):
            images.digest_reference("repo", "")

    asyncio.run(check())


def test_ecr_lifecycle_keeps_the_cache_and_the_last_n_images() -> None:
    rules = json.loads(lifecycle_policy(7))["rules"]
    assert rules[0]["selection"]["tagPrefixList"] == ["buildcache"]
    assert rules[1]["selection"]["tagPrefixList"] == ["promoted-"]
    assert rules[2]["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": 7,
    }
    # Several images per build: each keeps its cache and its last 7 builds.
    rules = json.loads(lifecycle_policy(7, 3))["rules"]
    assert [r["selection"]["countNumber"] for r in rules] == [3, 300, 21]


# ------------------------------------------------------------------ events, auth, naming


def test_rule_specs_follow_the_trigger() -> None:
    spec = rule_spec(function("thumbnail"), bucket_name="b", bus_name="bus")
    assert spec.bus is None  # S3 events only arrive on the default bus
    assert spec.pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": ["b"]},
            "object": {"key": [{"wildcard": ORIGINAL_KEY_PATTERN}]},
        },
    }
    analyze = rule_spec(function("analyze"), bucket_name="b", bus_name="bus")
    assert analyze.bus == "bus"
    assert analyze.pattern == {
        "source": ["collections.pipeline"],
        "detail-type": ["ImageProcessed", "AnalysisRequested"],
    }
    cleanup = rule_spec(function("cleanup"), bucket_name="b", bus_name="bus")
    assert (cleanup.bus, cleanup.pattern, cleanup.schedule) == (None, None, "rate(1 hour)")
    with pytest.raises(ValueError):
        rule_spec(function("api"), bucket_name="b", bus_name="bus")


def test_issuer_is_the_pool_endpoint_over_https() -> None:
    endpoint = "cognito-idp.us-east-1.amazonaws.com/us-east-1_abc"
    assert issuer_url(endpoint) == f"https://{endpoint}"
    assert issuer_url(f"https://{endpoint}") == f"https://{endpoint}"


def test_master_secret_arn_from_typed_or_plain_outputs() -> None:
    assert first_secret_arn([{"secretArn": "arn:1"}]) == "arn:1"
    assert first_secret_arn([]) is None

    class Typed:
        secret_arn = "arn:2"

    assert first_secret_arn([Typed()]) == "arn:2"


def test_one_parameter_naming_scheme() -> None:
    assert parameter_name("prod", "voyageApiKey") == "/collections/prod/voyageApiKey"


def test_option_spec_builds_resource_options() -> None:
    opts = OptionSpec(protect=True, replace_on_changes=("engine",)).to_options(
        parent=None, depends_on=[]
    )
    assert isinstance(opts, pulumi.ResourceOptions)
    assert opts.replace_on_changes == ["engine"]
