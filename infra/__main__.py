"""Collections on AWS: one Pulumi program, one dependency graph per stack.

See README.md, "Deploying to AWS".
"""
# ruff: noqa: E402  (the path bootstrap below must precede the project imports)

import sys
from pathlib import Path

# Pulumi runs this file from infra/; the repository root holds the `infra` and `runtime` packages.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pulumi

from infra import MIGRATIONS_DIR, REPO_ROOT
from infra.build import build_info, migrations_hash
from infra.components.api import Api
from infra.components.auth import Auth
from infra.components.database import DB_NAME, Database
from infra.components.events import Events
from infra.components.functions import Functions, TargetArns, async_functions
from infra.components.images import Images, PromotedImage
from infra.components.migrations import Migrations
from infra.components.monitoring import Monitoring
from infra.components.network import Network
from infra.components.secrets import Secrets
from infra.components.storage import Storage
from infra.config import load
from infra.environment import RuntimeRefs
from infra.options import component_options
from infra.references import qualified_stack_name
from runtime.topology import FUNCTIONS, Http

cfg = load()
fcfg = cfg.functions

network = Network("network", cfg.network, region=cfg.region, opts=component_options("network"))
secrets = Secrets("secrets", cfg.secrets, stack=cfg.stack, opts=component_options("secrets"))
storage = Storage("storage", cfg.storage, protect=cfg.protect, opts=component_options("storage"))
auth = Auth("auth", cfg.auth, protect=cfg.protect, opts=component_options("auth"))
database = Database(
    "database",
    cfg.database,
    stack=cfg.stack,
    protect=cfg.protect,
    vpc_id=network.vpc_id,
    subnet_ids=network.isolated_subnet_ids,
    client_security_group_id=network.functions_security_group_id,
    opts=component_options("database"),
)
# Either build and push the image here, or deploy exactly the digest another stack built and
# tested (image promotion: no build, no repository in this stack).
images: Images | PromotedImage
if cfg.images.from_stack:
    images = PromotedImage(
        "images",
        source_stack=qualified_stack_name(
            cfg.images.from_stack,
            organization=pulumi.get_organization(),
            project=pulumi.get_project(),
        ),
        architecture=fcfg.architecture,
        region=cfg.region,
        opts=component_options("images"),
    )
else:
    images = Images(
        "images",
        cfg.images,
        architecture=fcfg.architecture,
        region=cfg.region,
        build=build_info(REPO_ROOT),
        opts=component_options("images"),
    )
events = Events("events", opts=component_options("events"))

functions = Functions(
    "functions",
    fcfg,
    stack=cfg.stack,
    topology=FUNCTIONS,
    image_uris=images.image_uris,
    subnet_ids=network.private_subnet_ids,
    security_group_id=network.functions_security_group_id,
    refs=RuntimeRefs(
        stack=cfg.stack,
        region=cfg.region,
        db_host=database.address,
        db_port=database.port.apply(str),
        db_name=DB_NAME,
        db_secret_arn=database.master_secret_arn,
        bucket=storage.bucket_name,
        event_bus_name=events.bus.name,
        idempotency_table=storage.idempotency_table.name,
        anthropic_api_key_param=secrets.name_of("anthropicApiKey"),
        voyage_api_key_param=secrets.name_of("voyageApiKey"),
        cursor_key_param=secrets.name_of("cursorKey"),
        cognito_user_pool_id=auth.user_pool_id,
        cognito_app_client_id=auth.client_id,
        anthropic_model=fcfg.anthropic_model,
        voyage_model=fcfg.voyage_model,
        embedding_dimension=fcfg.embedding_dimension,
        conversations_table=storage.conversations_table.name,
        conversation_ttl_hours=cfg.assistant.conversation_ttl_hours,
        assistant_daily_token_budget=cfg.assistant.daily_token_budget,
        tavily_api_key_param=(
            secrets.name_of("tavilyApiKey") if cfg.secrets.tavily_api_key else None
        ),
    ),
    opts=component_options("functions"),
    targets=TargetArns(
        bucket_arn=storage.bucket_arn,
        db_secret_arn=database.master_secret_arn,
        db_user_arn_prefix=database.user_arn_prefix,
        event_bus_arn=events.bus.arn,
        idempotency_table_arn=storage.idempotency_table.arn,
        anthropic_param_arn=secrets.arn_of("anthropicApiKey"),
        voyage_param_arn=secrets.arn_of("voyageApiKey"),
        conversations_table_arn=storage.conversations_table.arn,
        cursor_param_arn=secrets.arn_of("cursorKey"),
        tavily_param_arn=secrets.arn_of("tavilyApiKey") if cfg.secrets.tavily_api_key else None,
    ),
)
migrations = Migrations(
    "migrations",
    functions=[(fn.name, fn_lambda) for fn, fn_lambda in functions.deploy_functions()],
    database=database,
    database_address=database.address,
    migrations_hash=migrations_hash(MIGRATIONS_DIR),
    opts=component_options("migrations"),
)
functions.create_service_functions(migrations.invocations)

events.connect(
    async_functions(FUNCTIONS),
    lambdas=functions.lambdas,
    dead_letter_queues=functions.dead_letter_queues,
    bucket_name=storage.bucket_name,
)
api_fn = next(fn for fn in FUNCTIONS if isinstance(fn.trigger, Http))
api = Api(
    "api",
    cfg.api,
    stack=cfg.stack,
    fn=api_fn,
    function=functions.lambdas[api_fn.name],
    issuer=auth.issuer,
    audience=auth.client_id,
    log_retention_days=fcfg.log_retention_days,
    opts=component_options("api"),
)
# The web app is served by the API at its own origin; the browser uploads straight to the bucket.
storage.allow_browsers(api.url)
monitoring = Monitoring(
    "monitoring",
    cfg.monitoring,
    stack=cfg.stack,
    region=cfg.region,
    api_id=api.api.id,
    function_names={name: fn.name for name, fn in functions.lambdas.items()},
    queue_names={name: q.name for name, q in functions.dead_letter_queues.items()},
    rules={name: (rule.name, events.rule_buses[name]) for name, rule in events.rules.items()},
    async_function_names={
        name: functions.lambdas[name].name for name in functions.dead_letter_queues
    },
    db_instance_id=database.instance.identifier,
    db_max_connections=cfg.database.max_connections,
    account_id=database.account_id,
    opts=component_options("monitoring"),
)

# Stack outputs: identifiers and URLs only, never a secret.
pulumi.export("region", cfg.region)
pulumi.export("apiUrl", api.url)
pulumi.export("webAppUrl", api.url.apply(lambda url: f"{url}/"))
pulumi.export("userPoolId", auth.user_pool_id)
pulumi.export("appClientId", auth.client_id)
pulumi.export("bucketName", storage.bucket_name)
pulumi.export("imageRepositoryUrl", images.repository_url)
# The runtime images, by name (runtime.topology: Function.image): promoted as a set.
pulumi.export("imageDigests", images.digests)
pulumi.export("imageUris", images.image_uris)
# What a stack promoting this one's images checks: the platform they were built for.
pulumi.export("imagePlatform", images.platform)
if isinstance(images, PromotedImage):
    pulumi.export("imageSourceStack", images.source_stack)
pulumi.export("dashboardUrl", monitoring.dashboard_url)
