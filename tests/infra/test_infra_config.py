"""The stack configuration: typed, validated, one clear error listing every problem."""

from __future__ import annotations

import dataclasses

import pytest
from infra_harness import FAKE_SECRETS, stack_config_with_secrets, stack_file_config

from infra.config import ConfigError, Secret, StackConfig, parse

SECRET_KEYS = list(FAKE_SECRETS)


def minimal(**overrides: str) -> dict[str, str]:
    """The smallest valid raw config: region and the two secrets."""
    raw = {"aws:region": "us-east-1", **FAKE_SECRETS}
    raw.update({(k if ":" in k else f"collections:{k}"): v for k, v in overrides.items()})
    return raw


def problems_of(raw: dict[str, str], secret_keys: list[str] | None = SECRET_KEYS) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw, stack="dev", secret_keys=secret_keys)
    assert caught.value.stack == "dev"
    assert "Pulumi.dev.yaml" in str(caught.value)
    return caught.value.problems


def test_defaults_are_the_dev_shape() -> None:
    cfg = parse(minimal(), stack="dev", secret_keys=SECRET_KEYS)
    assert cfg.region == "us-east-1"
    assert cfg.functions.architecture == "arm64"
    assert cfg.network.nat_gateways == "Single"
    assert cfg.network.availability_zones == 2
    assert cfg.database.instance_class == "db.t4g.micro"
    assert cfg.database.parameter_group_family == "postgres17"
    assert cfg.database.skip_final_snapshot is True
    assert cfg.protect is False
    assert cfg.functions.embedding_dimension == 1024
    assert cfg.secrets.anthropic_api_key.reveal() == FAKE_SECRETS["collections:anthropicApiKey"]


def test_committed_dev_stack_file_is_valid() -> None:
    cfg = parse(stack_config_with_secrets("dev"), stack="dev", secret_keys=SECRET_KEYS)
    assert cfg.stack == "dev"
    assert cfg.network.nat_gateways == "Single"
    assert cfg.database.multi_az is False
    assert cfg.protect is False
    assert cfg.auth.self_sign_up is True
    assert cfg.storage.cors_allowed_origins == ("http://localhost:5173",)


def test_committed_prod_stack_file_is_valid_and_protective() -> None:
    cfg = parse(stack_config_with_secrets("prod"), stack="prod", secret_keys=SECRET_KEYS)
    assert cfg.network.nat_gateways == "OnePerAz"
    assert cfg.network.availability_zones == 3
    assert cfg.database.multi_az is True
    assert cfg.database.deletion_protection is True
    assert cfg.database.skip_final_snapshot is False
    assert cfg.database.backup_retention_days == 14
    assert cfg.auth.deletion_protection is True
    assert cfg.protect is True
    assert cfg.images.force_delete_repository is False


def test_stack_files_hold_no_secret_values() -> None:
    for stack in ("dev", "prod"):
        raw = stack_file_config(stack)
        assert "collections:anthropicApiKey" not in raw
        assert "collections:voyageApiKey" not in raw


def test_missing_required_values_are_all_reported_with_the_fix() -> None:
    problems = problems_of({})
    text = "\n".join(problems)
    assert len(problems) == 3
    assert "aws:region: is required but not set" in text
    assert "pulumi config set --secret collections:anthropicApiKey" in text
    assert "pulumi config set --secret collections:voyageApiKey" in text


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("architecture", "amd64", "expected one of arm64, x86_64, got 'amd64'"),
        ("natGateways", "None", "expected one of Single, OnePerAz"),
        ("availabilityZones", "two", "expected an integer, got 'two'"),
        ("availabilityZones", "1", "must be >= 2"),
        ("dbMultiAz", "maybe", "expected true or false"),
        ("logRetentionDays", "10", "expected one of 1, 3, 5, 7, 14"),
        ("embeddingDimension", "2048", "expected one of 256, 512, 1024"),
        ("dbEngineVersion", "15", "no pgvector >= 0.8"),
        ("dbEngineVersion", "16.3", "ships pgvector < 0.8"),
        ("dbEngineVersion", "latest", "expected a PostgreSQL version"),
        ("dbInstanceClass", "t4g.micro", "expected an RDS class"),
        ("corsAllowedOrigins", "https://a.example", "expected a list of strings"),
        ("corsAllowedOrigins", '["https://a.example/"]', "each entry must be an origin"),
        ("mfa", "optional", "expected one of OFF, OPTIONAL, ON"),
        ("alarmEmail", "not-an-email", "expected an email address"),
        ("api5xxRateThreshold", "5", "must be between 0.0 and 1.0"),
        ("aws:region", "Virginia", "expected an AWS region"),
    ],
)
def test_wrong_values_name_the_key_the_value_and_the_fix(
    key: str, value: str, expected: str
) -> None:
    problems = problems_of(minimal(**{key: value}))
    assert len(problems) == 1, problems
    full = key if ":" in key else f"collections:{key}"
    assert problems[0].startswith(f"{full}: ")
    assert expected in problems[0]
    assert "Fix: pulumi config" in problems[0]


def test_storage_limits_are_consistent() -> None:
    problems = problems_of(minimal(dbAllocatedStorageGb="100", dbMaxAllocatedStorageGb="50"))
    assert problems == [
        "collections:dbMaxAllocatedStorageGb: must be >= dbAllocatedStorageGb (100), got 50"
    ]


def test_every_problem_is_reported_at_once() -> None:
    raw = minimal(architecture="sparc", mfa="sometimes", ecrKeepImages="0")
    del raw["collections:voyageApiKey"]
    problems = problems_of(raw)
    assert len(problems) == 4
    assert {p.split(":")[1] for p in problems} == {
        "ecrKeepImages",
        "architecture",
        "mfa",
        "voyageApiKey",
    }


def test_unknown_keys_are_rejected_with_a_suggestion() -> None:
    problems = problems_of(minimal(archtecture="arm64"))
    assert problems == [
        "collections:archtecture: unknown setting (did you mean collections:architecture?). "
        "Fix: pulumi config rm collections:archtecture"
    ]


def test_other_namespaces_are_not_ours_to_judge() -> None:
    cfg = parse(
        minimal(**{"aws:defaultTags": '{"tags": {"a": "b"}}'}), stack="dev", secret_keys=SECRET_KEYS
    )
    assert cfg.region == "us-east-1"


def test_api_keys_must_be_stored_as_secrets() -> None:
    problems = problems_of(minimal(), secret_keys=["collections:voyageApiKey"])
    assert problems == [
        "collections:anthropicApiKey: is stored in plaintext; it must be a secret. "
        "Fix: pulumi config set --secret collections:anthropicApiKey <value>"
    ]


def test_unknown_secret_list_skips_only_the_plaintext_check() -> None:
    cfg = parse(minimal(), stack="dev", secret_keys=None)
    assert cfg.secrets.voyage_api_key.reveal() == FAKE_SECRETS["collections:voyageApiKey"]
    with pytest.raises(ConfigError):
        parse({"aws:region": "us-east-1"}, stack="dev", secret_keys=None)


def test_secret_values_never_show_in_reprs() -> None:
    cfg = parse(minimal(), stack="dev", secret_keys=SECRET_KEYS)
    for value in FAKE_SECRETS.values():
        assert value not in repr(cfg)
        assert value not in repr(cfg.secrets)
        assert value not in str(cfg.secrets.items())
    assert repr(Secret("k", "v")) == "Secret('k', '***')"


def test_config_is_frozen() -> None:
    cfg = parse(minimal(), stack="dev", secret_keys=SECRET_KEYS)
    assert isinstance(cfg, StackConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.protect = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.functions.architecture = "x86_64"  # type: ignore[misc]


def test_final_snapshot_follows_deletion_protection_unless_set() -> None:
    protected = parse(minimal(deletionProtection="true"), stack="p", secret_keys=SECRET_KEYS)
    assert protected.database.skip_final_snapshot is False
    cfg = parse(
        minimal(deletionProtection="true", dbSkipFinalSnapshot="true"),
        stack="p",
        secret_keys=SECRET_KEYS,
    )
    assert cfg.database.skip_final_snapshot is True


# ------------------------------------------------------------------ stack references


@pytest.mark.parametrize("value", ["dev", "acme/collections/dev", "my-org/collections/dev.eu"])
def test_images_from_stack_accepts_a_stack_of_this_project(value: str) -> None:
    cfg = parse(minimal(imagesFromStack=value), stack="prod", secret_keys=SECRET_KEYS)
    assert cfg.images.from_stack == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("acme/other/dev", "expected a stack of this project like <org>/collections/<stack>"),
        ("acme/dev", "expected a stack of this project"),
        ("prod", "stack 'prod' cannot promote its own image"),
        ("acme/collections/prod", "stack 'prod' cannot promote its own image"),
    ],
)
def test_images_from_stack_rejects_other_projects_and_itself(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(minimal(imagesFromStack=value), stack="prod", secret_keys=SECRET_KEYS)
    assert problem in str(caught.value)


def test_network_stack_must_be_fully_qualified() -> None:
    cfg = parse(minimal(networkStack="acme/network/shared"), stack="dev", secret_keys=SECRET_KEYS)
    assert cfg.network.existing_stack == "acme/network/shared"
    problems = problems_of(minimal(networkStack="shared"))
    assert problems == [
        "collections:networkStack: expected a stack name like <org>/<project>/<stack>, got "
        "'shared'. Fix: pulumi config set collections:networkStack <value>"
    ]


def test_image_pull_accounts_are_account_ids() -> None:
    cfg = parse(minimal(imagePullAccounts='["210987654321"]'), stack="dev", secret_keys=SECRET_KEYS)
    assert cfg.images.pull_accounts == ("210987654321",)
    (problem,) = problems_of(minimal(imagePullAccounts='["prod"]'))
    assert "each entry must be a 12-digit AWS account id, got 'prod'" in problem


def test_committed_prod_stack_promotes_devs_image() -> None:
    cfg = parse(stack_config_with_secrets("prod"), stack="prod", secret_keys=SECRET_KEYS)
    assert cfg.images.from_stack == "dev"
    dev = parse(stack_config_with_secrets("dev"), stack="dev", secret_keys=SECRET_KEYS)
    assert dev.images.from_stack is None and dev.network.existing_stack is None
