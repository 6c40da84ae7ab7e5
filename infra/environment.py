"""The environment each function gets: ``runtime.config.Settings`` fields, prefixed COLLECTIONS_.

Derived from the function's declared resources, so a function only learns the names of what it
may touch. Secrets never appear here: API keys travel as SSM parameter *names*; the service
functions sign in to the database as the application role with IAM tokens (no password at all),
the migrator with the RDS-managed master secret, whose ARN it gets; the runtime reads both at run
time. ``tests/infra/test_runtime_contract.py`` checks this against ``runtime.config.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.topology import (
    DATABASE_APP_ROLE,
    DB_CONNECTIONS_PER_ENVIRONMENT,
    PIPELINE_EVENT_SOURCE,
    Function,
    Http,
    Resource,
    uses_database,
)

PREFIX = "COLLECTIONS_"
# Source of the pipeline's own events (runtime.config.Settings.event_source); the rules match it.
EVENT_SOURCE = PIPELINE_EVENT_SOURCE
POWERTOOLS_NAMESPACE = "Collections"

_BUCKET_RESOURCES = frozenset({Resource.ORIGINALS, Resource.DERIVED, Resource.USER_OBJECTS})


@dataclass(frozen=True)
class RuntimeRefs:
    """Names and ids the runtime needs; values are plain strings or ``pulumi.Output``."""

    stack: Any
    region: Any
    db_host: Any
    db_port: Any
    db_name: Any
    db_secret_arn: Any
    bucket: Any
    event_bus_name: Any
    idempotency_table: Any
    anthropic_api_key_param: Any
    voyage_api_key_param: Any
    cursor_key_param: Any
    cognito_user_pool_id: Any
    cognito_app_client_id: Any
    anthropic_model: str
    voyage_model: str
    embedding_dimension: int
    conversations_table: Any = None
    conversation_ttl_hours: float = 24.0
    assistant_daily_token_budget: int = 500_000
    # The Tavily key's parameter name; None when the stack configures no key (no web search).
    tavily_api_key_param: Any = None


def function_environment(fn: Function, refs: RuntimeRefs) -> dict[str, Any]:
    env: dict[str, Any] = {
        "STACK": refs.stack,
        "REGION": refs.region,
    }
    resources = fn.resources
    if uses_database(fn):
        env |= {
            "DB_HOST": refs.db_host,
            "DB_PORT": refs.db_port,
            "DB_NAME": refs.db_name,
            # One invocation at a time per environment: a small pool, counted in the bound on
            # connections (infra/database.py).
            "DB_POOL_SIZE": "1",
            "DB_MAX_OVERFLOW": str(DB_CONNECTIONS_PER_ENVIRONMENT - 1),
            # The vector column's width is part of the schema: every function that touches the
            # database (the migrator included) must agree on it.
            "EMBEDDING_DIMENSION": str(refs.embedding_dimension),
        }
    if Resource.DATABASE_ADMIN in resources:
        env["DB_SECRET_ARN"] = refs.db_secret_arn
    elif Resource.DATABASE in resources:
        env["DB_USER"] = DATABASE_APP_ROLE
    if resources & _BUCKET_RESOURCES:
        env["BUCKET"] = refs.bucket
    if Resource.EVENTS in resources:
        env |= {"EVENT_BUS_NAME": refs.event_bus_name, "EVENT_SOURCE": EVENT_SOURCE}
    if Resource.IDEMPOTENCY in resources:
        env["IDEMPOTENCY_TABLE"] = refs.idempotency_table
    if Resource.ANTHROPIC_KEY in resources:
        env |= {
            "ANALYZER": "anthropic",
            "ANTHROPIC_API_KEY_PARAM": refs.anthropic_api_key_param,
            "ANTHROPIC_MODEL": refs.anthropic_model,
        }
    if Resource.CURSOR_KEY in resources:
        env["CURSOR_KEY_PARAM"] = refs.cursor_key_param
    if Resource.VOYAGE_KEY in resources:
        env |= {
            "EMBEDDER": "voyage",
            "VOYAGE_API_KEY_PARAM": refs.voyage_api_key_param,
            "VOYAGE_MODEL": refs.voyage_model,
            "EMBEDDING_DIMENSION": str(refs.embedding_dimension),
        }
    if Resource.CONVERSATIONS in resources:
        env |= {
            "CONVERSATIONS_TABLE": refs.conversations_table,
            "CONVERSATION_TTL_HOURS": str(refs.conversation_ttl_hours),
            "ASSISTANT_DAILY_TOKEN_BUDGET": str(refs.assistant_daily_token_budget),
        }
    if Resource.TAVILY_KEY in resources and refs.tavily_api_key_param is not None:
        env["TAVILY_API_KEY_PARAM"] = refs.tavily_api_key_param
    if isinstance(fn.trigger, Http):
        env |= {
            "COGNITO_USER_POOL_ID": refs.cognito_user_pool_id,
            "COGNITO_APP_CLIENT_ID": refs.cognito_app_client_id,
        }
    out = {f"{PREFIX}{key}": value for key, value in env.items()}
    out |= {
        "POWERTOOLS_SERVICE_NAME": f"collections-{fn.name}",
        "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_NAMESPACE,
    }
    return out
