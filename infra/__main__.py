"""Collections on AWS: one Pulumi program, one dependency graph per stack (see infra/DEPLOY.md)."""
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
from infra.components.images import Images
from infra.components.migrations import Migrations
from infra.components.monitoring import Monitoring
from infra.components.network import Network
from infra.components.secrets import Secrets
from infra.components.storage import Storage
from infra.config import load
from infra.environment import RuntimeRefs
from runtime.topology import FUNCTIONS, Http

cfg = load()
fcfg = cfg.functions

network = Network("network", cfg.network, region=cfg.region)
secrets = Secrets("secrets", cfg.secrets, stack=cfg.stack)
storage = Storage("storage", cfg.storage, protect=cfg.protect)
auth = Auth("auth", cfg.auth, protect=cfg.protect)
database = Database(
    "database",
    cfg.database,
    stack=cfg.stack,
    protect=cfg.protect,
    vpc_id=network.vpc_id,
    subnet_ids=network.isolated_subnet_ids,
    client_security_group_id=network.functions_security_group_id,
)
images = Images("images", cfg.images, architecture=fcfg.architecture, build=build_info(REPO_ROOT))
events = Events("events")

functions = Functions(
    "functions",
    fcfg,
    stack=cfg.stack,
    topology=FUNCTIONS,
    image_uri=images.image_uri,
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
        cognito_user_pool_id=auth.user_pool_id,
        cognito_app_client_id=auth.client_id,
        anthropic_model=fcfg.anthropic_model,
        voyage_model=fcfg.voyage_model,
        embedding_dimension=fcfg.embedding_dimension,
    ),
    targets=TargetArns(
        bucket_arn=storage.bucket_arn,
        db_secret_arn=database.master_secret_arn,
        event_bus_arn=events.bus.arn,
        idempotency_table_arn=storage.idempotency_table.arn,
        anthropic_param_arn=secrets.arn_of("anthropicApiKey"),
        voyage_param_arn=secrets.arn_of("voyageApiKey"),
    ),
)
migrations = Migrations(
    "migrations",
    functions=[(fn.name, fn_lambda) for fn, fn_lambda in functions.deploy_functions()],
    database=database,
    database_address=database.address,
    migrations_hash=migrations_hash(MIGRATIONS_DIR),
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
)
monitoring = Monitoring(
    "monitoring",
    cfg.monitoring,
    stack=cfg.stack,
    region=cfg.region,
    api_id=api.api.id,
    function_names={name: fn.name for name, fn in functions.lambdas.items()},
    queue_names={name: q.name for name, q in functions.dead_letter_queues.items()},
    db_instance_id=database.instance.identifier,
)

# Stack outputs: identifiers and URLs only, never a secret.
pulumi.export("region", cfg.region)
pulumi.export("apiUrl", api.url)
pulumi.export("userPoolId", auth.user_pool_id)
pulumi.export("appClientId", auth.client_id)
pulumi.export("bucketName", storage.bucket_name)
pulumi.export("imageRepositoryUrl", images.repository_url)
pulumi.export("imageDigest", images.digest)
pulumi.export("imageUri", images.image_uri)
pulumi.export("dashboardUrl", monitoring.dashboard_url)
