"""Typed, validated stack configuration.

The stack's settings (``Pulumi.<stack>.yaml``, namespace ``collections:``, plus ``aws:region``)
are read once into a frozen :class:`StackConfig`. :func:`parse` is a plain function over the raw
string values Pulumi hands the program, so unit tests call it directly; it collects *every*
problem (missing, wrong type, out of range, unknown key, secret set in plaintext) and raises one
:class:`ConfigError` that names each key and the command that fixes it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runtime.topology import DB_CONNECTIONS_PER_ENVIRONMENT, FUNCTIONS, Function, uses_database

NAMESPACE = "collections"

ARCHITECTURES: tuple[str, ...] = ("arm64", "x86_64")
NAT_STRATEGIES: tuple[str, ...] = ("Single", "OnePerAz")
MFA_MODES: tuple[str, ...] = ("OFF", "OPTIONAL", "ON")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip
# voyage-3.5-lite output dimensions that pgvector can index with HNSW (vector: <= 2000 dims).
EMBEDDING_DIMENSIONS: tuple[int, ...] = (256, 512, 1024)
# First minor release of each RDS PostgreSQL major version that ships pgvector >= 0.8.0.
PGVECTOR_08_MIN_MINOR: Mapping[int, int] = {16: 5, 17: 1}
MIN_POSTGRES_MAJOR = 16

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")
_ENGINE_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?$")
_CIDR16 = re.compile(r"^10\.(\d{1,3})\.0\.0/16$")
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# A stack of this project: `<org>/collections/<stack>`, or `<stack>` for this stack's organization.
_PROJECT_STACK = re.compile(rf"^(?:{_NAME}/{NAMESPACE}/)?{_NAME}$")
# Any project's stack, fully qualified: `<org>/<project>/<stack>`.
_ANY_STACK = re.compile(rf"^{_NAME}/{_NAME}/{_NAME}$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


# Connections PostgreSQL keeps out of max_connections for ordinary roles: superuser_reserved_
# connections (3) and RDS's rds.rds_superuser_reserved_connections (2); plus 2 for an operator.
SERVER_RESERVED_CONNECTIONS = 3 + 2 + 2


def required_connections(functions: Iterable[Function]) -> int:
    """The most connections the functions can hold at once, plus the server's reserved slots:
    each environment holds at most DB_CONNECTIONS_PER_ENVIRONMENT, and a function runs at most
    its reserved concurrency of environments."""
    by_functions = sum(
        fn.reserved_concurrency * DB_CONNECTIONS_PER_ENVIRONMENT
        for fn in functions
        if uses_database(fn)
    )
    return by_functions + SERVER_RESERVED_CONNECTIONS


class ConfigError(ValueError):
    """The stack configuration is missing values or has wrong ones; the message lists them all."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"Stack {stack!r} has {len(problems)} configuration problem(s) "
            f"(Pulumi.{stack}.yaml):\n{lines}"
        )


class Secret:
    """A secret configuration value. Its repr never shows the value; call :meth:`reveal`."""

    __slots__ = ("_value", "key")

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.key!r}, '***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.key, self._value) == (other.key, other._value)

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class NetworkConfig:
    cidr_block: str
    availability_zones: int
    nat_gateways: str  # awsx NatGatewayStrategy: "Single" (dev) or "OnePerAz" (prod)
    # `<org>/<project>/<stack>` owning the VPC (outputs vpcId, privateSubnetIds,
    # isolatedSubnetIds); None = this stack creates its own VPC.
    existing_stack: str | None = None


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str
    engine_version: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    backup_retention_days: int
    multi_az: bool
    deletion_protection: bool
    skip_final_snapshot: bool
    # The server's max_connections (set in the parameter group); the functions' connection
    # budget must fit in it (see required_connections).
    max_connections: int = 80

    @property
    def major_version(self) -> int:
        return int(self.engine_version.split(".")[0])

    @property
    def parameter_group_family(self) -> str:
        return f"postgres{self.major_version}"


@dataclass(frozen=True)
class StorageConfig:
    versioning: bool
    noncurrent_version_expiration_days: int
    abort_incomplete_upload_days: int
    cors_allowed_origins: tuple[str, ...]
    deletion_protection: bool


@dataclass(frozen=True)
class AuthConfig:
    self_sign_up: bool
    mfa: str
    password_min_length: int
    access_token_validity_minutes: int
    id_token_validity_minutes: int
    refresh_token_validity_days: int
    deletion_protection: bool


@dataclass(frozen=True)
class ImagesConfig:
    keep_images: int
    force_delete_repository: bool
    # `<org>/collections/<stack>` (or `<stack>`) whose image this stack deploys, by digest,
    # without building; None = this stack builds and pushes its own image.
    from_stack: str | None = None
    # Other AWS accounts whose Lambda functions may pull this stack's images (promotion into a
    # stack that lives in another account).
    pull_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class FunctionsConfig:
    architecture: str
    log_retention_days: int
    anthropic_model: str
    voyage_model: str
    embedding_dimension: int


@dataclass(frozen=True)
class ApiConfig:
    throttle_rate_limit: int
    throttle_burst_limit: int
    cors_allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class MonitoringConfig:
    alarm_email: str | None
    api_5xx_rate_threshold: float
    db_free_storage_threshold_gb: int


@dataclass(frozen=True)
class AssistantConfig:
    conversation_ttl_hours: float
    daily_token_budget: int


@dataclass(frozen=True)
class SecretsConfig:
    anthropic_api_key: Secret
    voyage_api_key: Secret
    # Optional: the assistant offers web search only when it is set.
    tavily_api_key: Secret | None = None

    def items(self) -> tuple[tuple[str, Secret], ...]:
        """(config key, secret) pairs; the key is also the SSM parameter's last path segment."""
        pairs = [("anthropicApiKey", self.anthropic_api_key), ("voyageApiKey", self.voyage_api_key)]
        if self.tavily_api_key is not None:
            pairs.append(("tavilyApiKey", self.tavily_api_key))
        return tuple(pairs)


@dataclass(frozen=True)
class StackConfig:
    stack: str
    region: str
    # Pulumi `protect` + `retain_on_delete` on stateful resources (RDS, bucket, user pool, table).
    protect: bool
    network: NetworkConfig
    database: DatabaseConfig
    storage: StorageConfig
    auth: AuthConfig
    images: ImagesConfig
    functions: FunctionsConfig
    api: ApiConfig
    monitoring: MonitoringConfig
    secrets: SecretsConfig = field(repr=False)
    assistant: AssistantConfig = AssistantConfig(
        conversation_ttl_hours=24.0, daily_token_budget=500_000
    )


T = TypeVar("T")


class _Reader:
    """Reads raw Pulumi config strings, records every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, str], secret_keys: Iterable[str] | None) -> None:
        self.raw = dict(raw)
        self.secret_keys = None if secret_keys is None else set(secret_keys)
        self.problems: list[str] = []
        self.known: set[str] = set()

    @staticmethod
    def full(key: str) -> str:
        return key if ":" in key else f"{NAMESPACE}:{key}"

    def _raw(self, key: str) -> str | None:
        full = self.full(key)
        self.known.add(full)
        return self.raw.get(full)

    def _fail(self, key: str, message: str, example: str) -> None:
        self.problems.append(
            f"{self.full(key)}: {message}. Fix: pulumi config set {self.full(key)} {example}"
        )

    def _convert(
        self, key: str, default: T, convert: Callable[[str], T], what: str, example: str
    ) -> T:
        value = self._raw(key)
        if value is None:
            return default
        try:
            return convert(value)
        except (TypeError, ValueError):
            self._fail(key, f"expected {what}, got {value!r}", example)
            return default

    def string(
        self,
        key: str,
        default: str | None,
        *,
        choices: tuple[str, ...] | None = None,
        pattern: re.Pattern[str] | None = None,
        what: str = "a string",
    ) -> str:
        value = self._raw(key)
        if value is None:
            if default is None:
                example = choices[0] if choices else "<value>"
                self._fail(key, "is required but not set", example)
                return ""
            return default
        if choices is not None and value not in choices:
            self._fail(
                key,
                f"expected one of {', '.join(choices)}, got {value!r}",
                choices[0],
            )
        elif pattern is not None and not pattern.match(value):
            self._fail(key, f"expected {what}, got {value!r}", default or "<value>")
        return value

    def optional_string(self, key: str, *, pattern: re.Pattern[str], what: str) -> str | None:
        value = self._raw(key)
        if value is None or value == "":
            return None
        if not pattern.match(value):
            self._fail(key, f"expected {what}, got {value!r}", "<value>")
        return value

    def integer(
        self,
        key: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        choices: tuple[int, ...] | None = None,
    ) -> int:
        value = self._convert(key, default, _parse_int, "an integer", str(default))
        if choices is not None and value not in choices:
            listed = ", ".join(str(c) for c in choices)
            self._fail(key, f"expected one of {listed}, got {value}", str(default))
        if minimum is not None and value < minimum:
            self._fail(key, f"must be >= {minimum}, got {value}", str(default))
        if maximum is not None and value > maximum:
            self._fail(key, f"must be <= {maximum}, got {value}", str(default))
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self._convert(key, default, float, "a number", str(default))
        if not minimum <= value <= maximum:
            self._fail(key, f"must be between {minimum} and {maximum}, got {value}", str(default))
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._convert(key, default, _parse_bool, "true or false", str(default).lower())

    def string_list(
        self,
        key: str,
        *,
        pattern: re.Pattern[str],
        what: str,
        example: str = "'[\"https://app.example.com\"]' --path",
    ) -> tuple[str, ...]:
        value = self._convert(key, (), _parse_str_list, "a list of strings", example)
        for item in value:
            if not pattern.match(item):
                self._fail(key, f"each entry must be {what}, got {item!r}", example)
        return value

    def secret(self, key: str) -> Secret:
        full = self.full(key)
        value = self._raw(key)
        command = f"pulumi config set --secret {full} <value>"
        if value is None or value.strip() == "":
            self.problems.append(f"{full}: is required but not set. Fix: {command}")
            return Secret(full, "")
        if self.secret_keys is not None and full not in self.secret_keys:
            self.problems.append(
                f"{full}: is stored in plaintext; it must be a secret. Fix: {command}"
            )
        return Secret(full, value)

    def optional_secret(self, key: str) -> Secret | None:
        full = self.full(key)
        value = self._raw(key)
        if value is None or value.strip() == "":
            return None
        if self.secret_keys is not None and full not in self.secret_keys:
            self.problems.append(
                f"{full}: is stored in plaintext; it must be a secret. "
                f"Fix: pulumi config set --secret {full} <value>"
            )
        return Secret(full, value)

    def unknown_keys(self) -> None:
        prefix = f"{NAMESPACE}:"
        for key in sorted(self.raw):
            if key.startswith(prefix) and key not in self.known:
                close = difflib.get_close_matches(key, sorted(self.known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.problems.append(f"{key}: unknown setting{hint}. Fix: pulumi config rm {key}")


def _parse_int(value: str) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value).strip()):
        raise ValueError(value)
    return int(value)


def _parse_bool(value: str) -> bool:
    normalized = str(value).strip().lower()
    if normalized in ("true", "1", "yes"):
        return True
    if normalized in ("false", "0", "no"):
        return False
    raise ValueError(value)


def _parse_str_list(value: str) -> tuple[str, ...]:
    parsed: Any = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
        raise ValueError(value)
    return tuple(parsed)


def parse(
    raw: Mapping[str, str],
    *,
    stack: str,
    secret_keys: Iterable[str] | None = None,
) -> StackConfig:
    """Validate the raw config of ``stack`` (full keys, string values as Pulumi passes them).

    ``secret_keys`` lists the keys stored as secrets; ``None`` means "unknown" and skips the
    plaintext check (never the case under ``pulumi up``, which always passes the list).
    """
    r = _Reader(raw, secret_keys)
    protect = r.boolean("protect", False)
    deletion_protection = r.boolean("deletionProtection", False)

    region = r.string("aws:region", None, pattern=_REGION, what="an AWS region like us-east-1")

    network = NetworkConfig(
        cidr_block=r.string("vpcCidr", "10.0.0.0/16", pattern=_CIDR16, what="a 10.x.0.0/16 CIDR"),
        availability_zones=r.integer("availabilityZones", 2, minimum=2, maximum=4),
        nat_gateways=r.string("natGateways", "Single", choices=NAT_STRATEGIES),
        existing_stack=r.optional_string(
            "networkStack", pattern=_ANY_STACK, what="a stack name like <org>/<project>/<stack>"
        ),
    )

    engine_version = r.string(
        "dbEngineVersion", "17", pattern=_ENGINE_VERSION, what="a PostgreSQL version like 17"
    )
    _check_pgvector(r, engine_version)
    allocated = r.integer("dbAllocatedStorageGb", 20, minimum=20, maximum=65536)
    max_allocated = r.integer("dbMaxAllocatedStorageGb", 100, minimum=20, maximum=65536)
    if max_allocated < allocated:
        r.problems.append(
            f"{NAMESPACE}:dbMaxAllocatedStorageGb: must be >= dbAllocatedStorageGb "
            f"({allocated}), got {max_allocated}"
        )
    database = DatabaseConfig(
        instance_class=r.string(
            "dbInstanceClass", "db.t4g.micro", pattern=_INSTANCE_CLASS, what="an RDS class"
        ),
        engine_version=engine_version,
        allocated_storage_gb=allocated,
        max_allocated_storage_gb=max_allocated,
        backup_retention_days=r.integer("dbBackupRetentionDays", 1, minimum=1, maximum=35),
        multi_az=r.boolean("dbMultiAz", False),
        deletion_protection=deletion_protection,
        skip_final_snapshot=r.boolean("dbSkipFinalSnapshot", not deletion_protection),
        max_connections=r.integer("dbMaxConnections", 80, minimum=20, maximum=5000),
    )
    needed = required_connections(FUNCTIONS)
    if database.max_connections < needed:
        r.problems.append(
            f"{NAMESPACE}:dbMaxConnections: the functions may open {needed} connections "
            "(reserved concurrency x connections per environment, plus the server's reserved "
            f"slots), more than {database.max_connections}. Fix: pulumi config set "
            f"{NAMESPACE}:dbMaxConnections {needed} (with an instance class whose memory allows "
            "it), or lower the reserved concurrency in runtime/topology.py"
        )

    cors = r.string_list(
        "corsAllowedOrigins", pattern=_ORIGIN, what="an origin like https://app.example.com"
    )
    storage = StorageConfig(
        versioning=r.boolean("bucketVersioning", True),
        noncurrent_version_expiration_days=r.integer(
            "noncurrentVersionExpirationDays", 30, minimum=1, maximum=3650
        ),
        abort_incomplete_upload_days=r.integer(
            "abortIncompleteUploadDays", 1, minimum=1, maximum=30
        ),
        cors_allowed_origins=cors,
        deletion_protection=deletion_protection,
    )

    access = r.integer("accessTokenValidityMinutes", 60, minimum=5, maximum=1440)
    id_token = r.integer("idTokenValidityMinutes", 60, minimum=5, maximum=1440)
    refresh = r.integer("refreshTokenValidityDays", 30, minimum=1, maximum=3650)
    auth = AuthConfig(
        self_sign_up=r.boolean("selfSignUp", False),
        mfa=r.string("mfa", "OPTIONAL", choices=MFA_MODES),
        password_min_length=r.integer("passwordMinLength", 12, minimum=8, maximum=99),
        access_token_validity_minutes=access,
        id_token_validity_minutes=id_token,
        refresh_token_validity_days=refresh,
        deletion_protection=deletion_protection,
    )

    images_from = r.optional_string(
        "imagesFromStack",
        pattern=_PROJECT_STACK,
        what=f"a stack of this project like <org>/{NAMESPACE}/<stack> (or just <stack>)",
    )
    if images_from is not None and images_from.split("/")[-1] == stack:
        r.problems.append(
            f"{NAMESPACE}:imagesFromStack: stack {stack!r} cannot promote its own image. "
            f"Fix: pulumi config rm {NAMESPACE}:imagesFromStack"
        )
    pull_accounts = r.string_list(
        "imagePullAccounts",
        pattern=_ACCOUNT_ID,
        what="a 12-digit AWS account id",
        example="'[\"210987654321\"]' --path",
    )
    images = ImagesConfig(
        keep_images=r.integer("ecrKeepImages", 10, minimum=1, maximum=1000),
        force_delete_repository=r.boolean("ecrForceDelete", not protect),
        from_stack=images_from,
        pull_accounts=pull_accounts,
    )

    functions = FunctionsConfig(
        architecture=r.string("architecture", "arm64", choices=ARCHITECTURES),
        log_retention_days=r.integer("logRetentionDays", 14, choices=LOG_RETENTION_DAYS),
        anthropic_model=r.string(
            "anthropicModel",
            "claude-sonnet-4-6",
            pattern=re.compile(r"^[a-z0-9.-]+$"),
            what="a model id",
        ),
        voyage_model=r.string(
            "voyageModel",
            "voyage-3.5-lite",
            pattern=re.compile(r"^[a-z0-9.-]+$"),
            what="a model id",
        ),
        embedding_dimension=r.integer("embeddingDimension", 1024, choices=EMBEDDING_DIMENSIONS),
    )

    api = ApiConfig(
        throttle_rate_limit=r.integer("apiThrottleRateLimit", 20, minimum=1, maximum=10000),
        throttle_burst_limit=r.integer("apiThrottleBurstLimit", 40, minimum=1, maximum=5000),
        cors_allowed_origins=cors,
    )

    monitoring = MonitoringConfig(
        alarm_email=r.optional_string("alarmEmail", pattern=_EMAIL, what="an email address"),
        api_5xx_rate_threshold=r.number("api5xxRateThreshold", 0.05, minimum=0.0, maximum=1.0),
        db_free_storage_threshold_gb=r.integer(
            "dbFreeStorageThresholdGb", 2, minimum=1, maximum=1000
        ),
    )

    secrets = SecretsConfig(
        anthropic_api_key=r.secret("anthropicApiKey"),
        voyage_api_key=r.secret("voyageApiKey"),
        tavily_api_key=r.optional_secret("tavilyApiKey"),
    )
    assistant = AssistantConfig(
        conversation_ttl_hours=r.number(
            "conversationTtlHours", 24.0, minimum=0.25, maximum=24.0 * 365
        ),
        daily_token_budget=r.integer(
            "assistantDailyTokenBudget", 500_000, minimum=0, maximum=1_000_000_000
        ),
    )

    r.unknown_keys()
    if r.problems:
        raise ConfigError(stack, r.problems)
    return StackConfig(
        stack=stack,
        region=region,
        protect=protect,
        network=network,
        database=database,
        storage=storage,
        auth=auth,
        images=images,
        functions=functions,
        api=api,
        monitoring=monitoring,
        secrets=secrets,
        assistant=assistant,
    )


def _check_pgvector(r: _Reader, engine_version: str) -> None:
    match = _ENGINE_VERSION.match(engine_version)
    if not match:
        return  # already reported
    major = int(match.group(1))
    if major < MIN_POSTGRES_MAJOR:
        r.problems.append(
            f"{NAMESPACE}:dbEngineVersion: PostgreSQL {major} on RDS has no pgvector >= 0.8; "
            f"use {MIN_POSTGRES_MAJOR} or later. "
            f"Fix: pulumi config set {NAMESPACE}:dbEngineVersion 17"
        )
        return
    minor = match.group(2)
    floor = PGVECTOR_08_MIN_MINOR.get(major)
    if minor is not None and floor is not None and int(minor) < floor:
        r.problems.append(
            f"{NAMESPACE}:dbEngineVersion: {engine_version} ships pgvector < 0.8; use "
            f"{major}.{floor} or later (or just {major}). "
            f"Fix: pulumi config set {NAMESPACE}:dbEngineVersion {major}"
        )


def _raw_pulumi_config() -> tuple[dict[str, str], set[str] | None]:
    """Every config value the engine passed to this program, and the keys stored as secrets."""
    from pulumi.runtime import config as runtime_config

    raw: dict[str, str] = {}
    raw.update({k: str(v) for k, v in runtime_config.get_config_env().items()})
    raw.update({k: str(v) for k, v in runtime_config.CONFIG.get().items()})
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys.update(k for k in raw if runtime_config.is_config_secret(k))
    # Pulumi always tells the program which keys are secrets; with no list at all (an odd host)
    # the plaintext check is skipped rather than failing every secret.
    known = secret_keys if (secret_keys or "PULUMI_CONFIG_SECRET_KEYS" in os.environ) else None
    return raw, known


def load() -> StackConfig:
    """The current stack's configuration, validated (raises :class:`ConfigError`)."""
    import pulumi

    raw, secret_keys = _raw_pulumi_config()
    return parse(raw, stack=pulumi.get_stack(), secret_keys=secret_keys)
