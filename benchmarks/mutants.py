# ruff: noqa: E501  (a table of exact source fragments: long lines are the data)
"""Realistic mistakes in the infrastructure program and the topology, one per mutant.

Each mutant replaces one exact piece of text (present exactly once in its file) with what a
plausible slip would have written. ``python -m benchmarks.mutation`` applies each to a scratch
copy of the repository and runs ``tests/infra``; a mutant the tests do not fail survives.
``tests/infra/test_mutants.py`` checks that every mutant still applies to the current tree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str
    old: str
    new: str
    what: str  # the mistake, and what it would break on AWS


ENV = "infra/environment.py"
MAIN = "infra/__main__.py"
FUNCS = "infra/components/functions.py"
IAM = "infra/iam.py"
TOPO = "runtime/topology.py"
MON = "infra/components/monitoring.py"
DB = "infra/components/database.py"
NET = "infra/components/network.py"
API = "infra/components/api.py"
AUTH = "infra/components/auth.py"
EVENTS = "infra/components/events.py"
STORAGE = "infra/components/storage.py"
SECRETS = "infra/components/secrets.py"
CONFIG = "infra/config.py"
IMAGES = "infra/components/images.py"

MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- environment (names, kinds)
    Mutant("env-bucket-only-for-user-objects", ENV, "if resources & _BUCKET_RESOURCES:",
           "if Resource.USER_OBJECTS in resources:",
           "thumbnail/analyze lose COLLECTIONS_BUCKET: every event fails"),
    Mutant("env-bus-name-misspelled", ENV, '"EVENT_BUS_NAME": refs.event_bus_name',
           '"EVENT_BUS": refs.event_bus_name', "the runtime publishes to the local default bus"),
    Mutant("env-db-host-dropped", ENV, '            "DB_HOST": refs.db_host,\n', "",
           "no database host: every DB function fails"),
    Mutant("env-idempotency-misspelled", ENV, 'env["IDEMPOTENCY_TABLE"] = refs.idempotency_table',
           'env["IDEMPOTENCY"] = refs.idempotency_table',
           "analysis runs unguarded: a redelivery pays for a second model call"),
    Mutant("env-anthropic-key-var", ENV, '"ANTHROPIC_API_KEY_PARAM": refs.anthropic_api_key_param',
           '"ANTHROPIC_API_KEY": refs.anthropic_api_key_param',
           "the parameter name is used as the API key"),
    Mutant("env-db-user-master", ENV, 'env["DB_USER"] = DATABASE_APP_ROLE',
           'env["DB_USER"] = "collections_admin"', "IAM token for a user the policy does not grant"),
    Mutant("env-cognito-client-dropped", ENV,
           '            "COGNITO_APP_CLIENT_ID": refs.cognito_app_client_id,\n', "",
           "the API cannot check the token audience"),
    Mutant("env-vector-width-only-voyage", ENV,
           '            "EMBEDDING_DIMENSION": str(refs.embedding_dimension),\n        }\n    if Resource.DATABASE_ADMIN',
           '        }\n    if Resource.DATABASE_ADMIN',
           "the migrator creates a 384-wide vector column, Voyage writes 1024"),
    Mutant("env-pool-overflow-large", ENV, '"DB_MAX_OVERFLOW": str(DB_CONNECTIONS_PER_ENVIRONMENT - 1)',
           '"DB_MAX_OVERFLOW": "4"', "connections beyond max_connections under a burst"),
    Mutant("env-secret-for-everyone", ENV, "    elif Resource.DATABASE in resources:\n        env[\"DB_USER\"]",
           "    if Resource.DATABASE in resources:\n        env[\"DB_USER\"]",
           "the migrator is told an app user too (ambiguous credentials)"),
    Mutant("env-event-source-dropped", ENV,
           '{"EVENT_BUS_NAME": refs.event_bus_name, "EVENT_SOURCE": EVENT_SOURCE}',
           '{"EVENT_BUS_NAME": refs.event_bus_name}', "events published with a source no rule matches"),
    # ---------------------------------------------------------------- wiring in the program
    Mutant("main-bucket-arn-as-name", MAIN, "        bucket=storage.bucket_name,\n        event_bus_name",
           "        bucket=storage.bucket_arn,\n        event_bus_name",
           "S3 calls with an ARN as the bucket name fail"),
    Mutant("main-bus-arn-as-name", MAIN, "event_bus_name=events.bus.name,",
           "event_bus_name=events.bus.arn,", "PutEvents to a bus named like an ARN"),
    Mutant("main-table-arn-as-name", MAIN, "idempotency_table=storage.idempotency_table.name,",
           "idempotency_table=storage.idempotency_table.arn,", "DynamoDB calls fail"),
    Mutant("main-param-arn-as-name", MAIN, 'anthropic_api_key_param=secrets.name_of("anthropicApiKey"),',
           'anthropic_api_key_param=secrets.arn_of("anthropicApiKey"),',
           "the runtime asks SSM for a parameter named like an ARN"),
    Mutant("main-voyage-param-swapped", MAIN, 'voyage_api_key_param=secrets.name_of("voyageApiKey"),',
           'voyage_api_key_param=secrets.name_of("anthropicApiKey"),',
           "embed reads a parameter its role may not read (and the wrong key)"),
    Mutant("main-db-endpoint-as-host", MAIN, "        db_host=database.address,",
           "        db_host=database.instance.endpoint,", "host:port given as a host"),
    Mutant("main-pool-id-as-client", MAIN, "cognito_app_client_id=auth.client_id,",
           "cognito_app_client_id=auth.user_pool_id,", "every token's audience is rejected"),
    Mutant("main-queue-url-in-alarms", MAIN, "queue_names={name: q.name for name, q in",
           "queue_names={name: q.url for name, q in", "DLQ alarms watch queues that do not exist"),
    Mutant("main-rule-bus-dropped", MAIN, "rules={name: (rule.name, events.rule_buses[name])",
           "rules={name: (rule.name, None)", "custom-bus rule alarms never see data"),
    Mutant("main-function-arn-in-alarms", MAIN, "name: functions.lambdas[name].name for name in",
           "name: functions.lambdas[name].arn for name in", "destination alarms see no data"),
    Mutant("main-max-connections-alarm", MAIN, "db_max_connections=cfg.database.max_connections,",
           "db_max_connections=cfg.database.max_connections * 10,",
           "the connections alarm can never fire"),
    Mutant("main-db-secret-arn-for-user", MAIN, "        db_user_arn_prefix=database.user_arn_prefix,",
           "        db_user_arn_prefix=database.master_secret_arn,",
           "rds-db:connect granted on a secret ARN"),
    # ---------------------------------------------------------------- functions
    Mutant("fn-no-depends-on-policy", FUNCS,
           "depends_on: list[pulumi.Resource] = [self.role_policies[fn.name]]",
           "depends_on: list[pulumi.Resource] = []",
           "fresh stack: CreateFunction before the role may create network interfaces"),
    Mutant("fn-no-reserved-concurrency", FUNCS,
           "            reserved_concurrent_executions=fn.reserved_concurrency,\n", "",
           "unbounded environments exhaust max_connections"),
    Mutant("fn-reserved-zero", FUNCS, "reserved_concurrent_executions=fn.reserved_concurrency,",
           "reserved_concurrent_executions=0,", "every function throttled"),
    Mutant("fn-dlq-unencrypted", FUNCS, "sqs_managed_sse_enabled=True,",
           "sqs_managed_sse_enabled=False,", "user data at rest unencrypted in the DLQ"),
    Mutant("fn-dlq-retention-short", FUNCS, "DLQ_RETENTION_SECONDS = 14 * 24 * 3600",
           "DLQ_RETENTION_SECONDS = 4 * 24 * 3600", "failed events expire before anyone looks"),
    Mutant("fn-tracing-passthrough", FUNCS, '{"mode": "Active"}', '{"mode": "PassThrough"}',
           "no traces"),
    Mutant("fn-no-security-group", FUNCS, '"security_group_ids": [self._security_group_id]',
           '"security_group_ids": []', "functions cannot reach the database"),
    Mutant("fn-fixed-name", FUNCS,
           "            # No `name`: auto-named, so a replacement is created before the old one is deleted.\n",
           '            name=f"collections-{fn.name}",\n',
           "replacing a function fails: the name is taken"),
    Mutant("fn-no-retries-async", FUNCS,
           '"maximum_retry_attempts": fn.retry.maximum_retry_attempts,\n        "maximum_event_age_in_seconds": fn.retry.maximum_event_age_seconds,\n    }\n\n\n@dataclass',
           '"maximum_retry_attempts": 0,\n        "maximum_event_age_in_seconds": fn.retry.maximum_event_age_seconds,\n    }\n\n\n@dataclass',
           "a transient error fails an item at once"),
    Mutant("fn-no-on-failure-destination", FUNCS,
           '                destination_config={"on_failure": {"destination": dlq.arn}},\n', "",
           "async failures are dropped"),
    Mutant("fn-timeout-from-memory", FUNCS, "            timeout=fn.timeout_s,",
           "            timeout=fn.memory_mb,", "timeouts above Lambda's 900 s limit"),
    # ---------------------------------------------------------------- IAM
    Mutant("iam-s3-read-star", IAM, 'out.append(_allow(f"Read{sid}", ["s3:GetObject"], [arn]))',
           'out.append(_allow(f"Read{sid}", ["s3:GetObject"], ["*"]))', "reads any bucket"),
    Mutant("iam-delete-everywhere", IAM, "            if resource is Resource.USER_OBJECTS:\n",
           "            if True:\n", "the thumbnailer may delete originals"),
    Mutant("iam-list-unconditioned", IAM,
           '                Condition={"StringLike": {"s3:prefix": [USERS_PREFIX, f"{USERS_PREFIX}*"]}},\n',
           "", "lists the whole bucket"),
    Mutant("iam-rds-any-user", IAM, '[f"{t.db_user_arn_prefix}{DATABASE_APP_ROLE}"]',
           '[f"{t.db_user_arn_prefix}*"]', "may sign in as the master user"),
    Mutant("iam-secret-for-all", IAM, "    if Resource.DATABASE_ADMIN in fn.resources:\n        # The migrator",
           "    if Resource.DATABASE_ADMIN in fn.resources or Resource.DATABASE in fn.resources:\n        # The migrator",
           "every function reads the master password"),
    Mutant("iam-events-star", IAM, '_allow("PublishEvents", ["events:PutEvents"], [t.event_bus_arn])',
           '_allow("PublishEvents", ["events:PutEvents"], ["*"])', "publishes on any bus"),
    Mutant("iam-ssm-wildcard-action", IAM, 'out.append(_allow(sid, ["ssm:GetParameter"], [arn]))',
           'out.append(_allow(sid, ["ssm:GetParameter*"], [arn]))', "wildcard action"),
    Mutant("iam-idempotency-no-update", IAM,
           '["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]',
           '["dynamodb:PutItem", "dynamodb:DeleteItem"]', "completing a guarded call is denied"),
    Mutant("iam-logs-star", IAM, '[f"{log_group_arn}:*"]', '["*"]', "writes to any log group"),
    Mutant("iam-vpc-only-app-role", IAM, "    return uses_database(fn)",
           "    return Resource.DATABASE in fn.resources", "the migrator runs outside the VPC"),
    Mutant("iam-dlq-star", IAM, '_allow("OnFailureDestination", ["sqs:SendMessage"], [dead_letter_queue_arn])',
           '_allow("OnFailureDestination", ["sqs:SendMessage"], ["*"])', "sends to any queue"),
    # ---------------------------------------------------------------- topology
    Mutant("topo-thumbnail-no-originals", TOPO,
           "reads=frozenset({Resource.ORIGINALS, Resource.DATABASE}),",
           "reads=frozenset({Resource.DATABASE}),", "AccessDenied reading the upload"),
    Mutant("topo-analyze-no-derived", TOPO,
           "{Resource.DERIVED, Resource.DATABASE, Resource.ANTHROPIC_KEY, Resource.IDEMPOTENCY}",
           "{Resource.DATABASE, Resource.ANTHROPIC_KEY, Resource.IDEMPOTENCY}",
           "AccessDenied reading the analysis derivative"),
    Mutant("topo-analyze-no-key", TOPO,
           "{Resource.DERIVED, Resource.DATABASE, Resource.ANTHROPIC_KEY, Resource.IDEMPOTENCY}",
           "{Resource.DERIVED, Resource.DATABASE, Resource.IDEMPOTENCY}",
           "no Anthropic key: every analysis fails"),
    Mutant("topo-analyze-no-idempotency-write", TOPO,
           "writes=frozenset({Resource.DATABASE, Resource.EVENTS, Resource.IDEMPOTENCY}),",
           "writes=frozenset({Resource.DATABASE, Resource.EVENTS}),",
           "AccessDenied recording a guarded call"),
    Mutant("topo-thumbnail-no-events", TOPO,
           "writes=frozenset({Resource.DERIVED, Resource.DATABASE, Resource.EVENTS}),",
           "writes=frozenset({Resource.DERIVED, Resource.DATABASE}),",
           "ImageProcessed never published"),
    Mutant("topo-embed-no-events", TOPO,
           "        reads=frozenset({Resource.DATABASE, Resource.VOYAGE_KEY}),\n        writes=frozenset({Resource.DATABASE, Resource.EVENTS}),",
           "        reads=frozenset({Resource.DATABASE, Resource.VOYAGE_KEY}),\n        writes=frozenset({Resource.DATABASE}),",
           "ItemIndexed never published"),
    Mutant("topo-cleanup-no-list", TOPO,
           "        reads=frozenset({Resource.DATABASE, Resource.USER_OBJECTS}),\n        writes=frozenset({Resource.DATABASE, Resource.USER_OBJECTS}),\n        description=\"Fails",
           "        reads=frozenset({Resource.DATABASE}),\n        writes=frozenset({Resource.DATABASE, Resource.USER_OBJECTS}),\n        description=\"Fails",
           "cleanup cannot list orphans"),
    Mutant("topo-reserved-api-large", TOPO, "reserved_concurrency=15,", "reserved_concurrency=150,",
           "the API alone can exhaust max_connections"),
    Mutant("topo-migrate-not-admin", TOPO,
           "        reads=frozenset({Resource.DATABASE_ADMIN}),\n        writes=frozenset({Resource.DATABASE_ADMIN}),",
           "        reads=frozenset({Resource.DATABASE}),\n        writes=frozenset({Resource.DATABASE}),",
           "migrations as the application role: no DDL allowed"),
    Mutant("topo-api-timeout-above-api", TOPO, "        timeout_s=29,", "        timeout_s=60,",
           "API Gateway answers 504 while the function keeps running"),
    # ---------------------------------------------------------------- monitoring
    Mutant("mon-dlq-metric-received", MON, 'metric_name="ApproximateNumberOfMessagesVisible",',
           'metric_name="NumberOfMessagesReceived",', "nobody receives from a DLQ: never fires"),
    Mutant("mon-storage-threshold-gb", MON, "threshold=cfg.db_free_storage_threshold_gb * GIB,",
           "threshold=cfg.db_free_storage_threshold_gb,", "threshold in GB against bytes"),
    Mutant("mon-storage-comparison-inverted", MON,
           'threshold=cfg.db_free_storage_threshold_gb * GIB,\n            comparison_operator="LessThanThreshold",',
           'threshold=cfg.db_free_storage_threshold_gb * GIB,\n            comparison_operator="GreaterThanThreshold",',
           "alarms while storage is fine, silent when it runs out"),
    Mutant("mon-5xx-rest-name", MON, 'metric_name="5xx",', 'metric_name="5XXError",',
           "REST API metric name: HTTP APIs never publish it"),
    Mutant("mon-5xx-sum", MON, '            statistic="Average",\n            period=300,\n            evaluation_periods=2,',
           '            statistic="Sum",\n            period=300,\n            evaluation_periods=2,',
           "a rate threshold compared with a count"),
    Mutant("mon-rule-no-bus-dimension", MON,
           'lambda a: {"RuleName": a[0]} | ({"EventBusName": a[1]} if a[1] else {})',
           'lambda a: {"RuleName": a[0]}', "custom-bus rule metrics never match"),
    Mutant("mon-errors-average", MON, '                    statistic="Sum",\n                    period=300,\n                    evaluation_periods=1,\n                    threshold=0,\n                    comparison_operator="GreaterThanThreshold",\n                )\n        for fn, function in sorted(async_function_names',
           '                    statistic="Average",\n                    period=300,\n                    evaluation_periods=1,\n                    threshold=0,\n                    comparison_operator="GreaterThanThreshold",\n                )\n        for fn, function in sorted(async_function_names',
           "statistic that hides counts"),
    Mutant("mon-topic-unencrypted", MON, 'aws.sns.Topic(f"{name}-alarms", kms_master_key_id=self.key.arn, opts=child)',
           'aws.sns.Topic(f"{name}-alarms", opts=child)', "alarm topic unencrypted"),
    Mutant("mon-key-no-cloudwatch", MON, '"Principal": {"Service": "cloudwatch.amazonaws.com"},',
           '"Principal": {"Service": "sns.amazonaws.com"},',
           "CloudWatch cannot publish to the encrypted topic: alarms are silent"),
    Mutant("mon-no-throttle-alarm", MON, '("throttles", "Throttles", "throttled invocations (reserved concurrency reached)"),',
           "", "throttled events unnoticed"),
    Mutant("mon-connections-share", MON, "DB_CONNECTIONS_ALARM_SHARE = 0.8", "DB_CONNECTIONS_ALARM_SHARE = 1.2",
           "alarm above max_connections: never fires"),
    Mutant("mon-no-ok-actions", MON, "                ok_actions=actions,\n", "",
           "no all-clear notification"),
    # ---------------------------------------------------------------- database, network, API, auth
    Mutant("db-major-upgrades", DB, "allow_major_version_upgrade=False,", "allow_major_version_upgrade=True,",
           "an engine-version edit upgrades PostgreSQL's major version in place"),
    Mutant("db-storage-unbounded", DB, "max_allocated_storage=cfg.max_allocated_storage_gb,",
           "max_allocated_storage=65536,", "storage autoscaling without a ceiling"),
    Mutant("db-unencrypted", DB, "storage_encrypted=True,", "storage_encrypted=False,",
           "data at rest unencrypted"),
    Mutant("db-no-iam-auth", DB, "iam_database_authentication_enabled=True,",
           "iam_database_authentication_enabled=False,", "every IAM token is rejected"),
    Mutant("db-max-connections-unset", DB, '            "value": str(max_connections),',
           '            "value": "5000",', "the budget check is meaningless"),
    Mutant("db-egress-everything", DB, '            description="PostgreSQL to the database",\n            ip_protocol="tcp",',
           '            description="PostgreSQL to the database",\n            ip_protocol="-1",',
           "functions may reach any port of the database group"),
    Mutant("net-egress-anywhere", NET, "            from_port=443,\n            to_port=443,",
           "            from_port=0,\n            to_port=65535,", "egress on every port to 0.0.0.0/0"),
    Mutant("api-timeout-above-limit", API, "timeout_milliseconds=30000,",
           "timeout_milliseconds=60000,", "HTTP APIs refuse an integration timeout above 30 s"),
    Mutant("auth-existence-errors", AUTH, 'prevent_user_existence_errors="ENABLED",',
           'prevent_user_existence_errors="LEGACY",', "sign-in reveals which emails have accounts"),
    Mutant("api-authorizer-no-audience", API, 'jwt_configuration={"issuer": issuer, "audiences": [audience]},',
           'jwt_configuration={"issuer": issuer, "audiences": []},',
           "tokens for any client of the pool accepted"),
    Mutant("secrets-plain-string", SECRETS, 'type="SecureString",\n                value=pulumi.Output.secret(secret.reveal()),', 'type="String",\n                value=pulumi.Output.secret(secret.reveal()),',
           "API keys readable in plaintext"),
    Mutant("config-budget-check-off", CONFIG, "    if database.max_connections < needed:",
           "    if database.max_connections < 0:", "an over-budget stack is accepted"),
    # ---------------------------------------------------------------- images (one per Function.image)
    Mutant("fn-one-image-for-all", FUNCS, "image_uri=self._image_uris[fn.image],",
           'image_uri=self._image_uris["api"],',
           "every function runs the API's image: the thumbnail function has no Pillow, analyze no SDK"),
    Mutant("images-build-arg-dropped", IMAGES, '                "IMAGE": image,\n', "",
           "every image builds the Dockerfile's default group: all functions get the API's set"),
    Mutant("images-shared-cache", IMAGES, 'f"{url}:{CACHE_TAG}-{image}"', 'f"{url}:{CACHE_TAG}"',
           "the images overwrite each other's registry cache: every build is a cold build"),
    Mutant("promote-unchecked-digests", IMAGES, 'digests = output("imageDigests", has_digests_of(images))',
           'digests = output("imageDigests", lambda value: None)',
           "a source stack missing an image promotes a broken set: a function's image URI fails at deploy"),
)  # fmt: skip

# Survivors, with why each is acceptable (filled from the measured run; see the README).
ACCEPTED_SURVIVORS: dict[str, str] = {
    "env-secret-for-everyone": "equivalent mutant: no function declares both DATABASE and "
    "DATABASE_ADMIN (the migrator declares only the latter), so `if` and `elif` give the same "
    "environment; test_only_the_migrator_holds_the_master_credentials pins that declaration",
}
