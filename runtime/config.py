"""Runtime configuration, read once per process from the environment (prefix ``COLLECTIONS_``).

Secrets are never configuration values: on AWS the settings hold SSM parameter *names*
(``*_api_key_param``) and the values are read at run time (see ``runtime.adapters.secrets``);
locally the providers' own environment variables (``ANTHROPIC_API_KEY``, ``VOYAGE_API_KEY``)
are used.
"""

from functools import lru_cache
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.topology import Resource

HTTP = "http"  # needed by the HTTP function (its trigger), whatever it declares


def deployed(kind: str, *needed_by: Resource | str) -> Any:
    """Field metadata: on AWS this setting is provided to every function that declares one of
    ``needed_by`` (a topology ``Resource``, or :data:`HTTP`), as a value of ``kind`` — ``name``,
    ``arn``, ``host``, ``port``, ``int``, ``id``, ``parameter`` (an SSM name) or ``literal``;
    with no ``needed_by``, every function gets it.
    The infrastructure tests derive the contract from it (tests/infra/test_runtime_contract.py).
    """
    return {"deployed": {"kind": kind, "needed_by": [str(n) for n in needed_by]}}


_BUCKET = (Resource.ORIGINALS, Resource.DERIVED, Resource.USER_OBJECTS)
_DB = (Resource.DATABASE, Resource.DATABASE_ADMIN)

LOCAL_EMBEDDING_DIMENSION = 384
# The offline embedders' native dimensions, by model (Settings.local_embedding_model).
LOCAL_EMBEDDING_DIMENSIONS = {
    "all-MiniLM-L6-v2": LOCAL_EMBEDDING_DIMENSION,
    "all-mpnet-base-v2": 768,
}
VOYAGE_DEFAULT_DIMENSION = 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLLECTIONS_", extra="ignore")

    stack: str = Field("local", json_schema_extra=deployed("name"))
    region: str = Field("us-east-1", json_schema_extra=deployed("name"))
    aws_endpoint_url: str | None = None

    # Database: a full URL locally; on AWS host/name/user plus the RDS-managed secret.
    database_url: str | None = None
    db_host: str | None = Field(None, json_schema_extra=deployed("host", *_DB))
    db_port: int = Field(5432, json_schema_extra=deployed("port", *_DB))
    db_name: str = Field("collections", json_schema_extra=deployed("name", *_DB))
    # The application role, signing in with an IAM token (no password): every function but the
    # migrator. The migrator instead reads the RDS-managed master secret.
    db_user: str | None = Field(None, json_schema_extra=deployed("name", Resource.DATABASE))
    db_secret_arn: str | None = Field(
        None, json_schema_extra=deployed("arn", Resource.DATABASE_ADMIN)
    )
    # Connections one process may hold (SQLAlchemy pool_size + max_overflow). On AWS the product
    # of these and the functions' reserved concurrency stays below the server's max_connections.
    db_pool_size: int = Field(2, ge=1, json_schema_extra=deployed("int", *_DB))
    db_max_overflow: int = Field(2, ge=0, json_schema_extra=deployed("int", *_DB))

    bucket: str = Field("collections-local", json_schema_extra=deployed("name", *_BUCKET))
    event_bus_name: str = Field(
        "collections-local", json_schema_extra=deployed("name", Resource.EVENTS)
    )
    # = topology.PIPELINE_EVENT_SOURCE
    event_source: str = Field(
        "collections.pipeline", json_schema_extra=deployed("literal", Resource.EVENTS)
    )
    idempotency_table: str | None = Field(
        None, json_schema_extra=deployed("name", Resource.IDEMPOTENCY)
    )

    # Cognito: the tenant is the verified token's ``sub``. The JWKS URL defaults to the pool's
    # (https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json); local mode
    # points it at the emulator, whose tokens still carry the AWS-style issuer.
    cognito_user_pool_id: str | None = Field(None, json_schema_extra=deployed("id", HTTP))
    cognito_app_client_id: str | None = Field(None, json_schema_extra=deployed("id", HTTP))
    cognito_jwks_url: str | None = None
    # Refuse tokens issued (``iat``) longer ago than this, whatever their ``exp``; None: only
    # ``exp`` limits a token's life (Cognito's are at most a day).
    api_max_token_age_seconds: int | None = Field(default=None, ge=60)

    # The web app: a sign-in hint and a username to suggest (local mode: the demo user).
    web_sign_in_hint: str | None = None
    web_demo_username: str | None = None

    # HTTP API
    cors_origins: tuple[str, ...] = ()
    # Addresses/networks of reverse proxies whose X-Forwarded-For is believed (for the access
    # log and the per-address rate limit). None by default: the peer is the client. On Lambda
    # the client address is API Gateway's own ``sourceIp``.
    trusted_proxies: tuple[str, ...] = ()
    # The SSM SecureString holding the key that authenticates page cursors; unset: a random key
    # per process (cursors then do not outlive it).
    cursor_key_param: str | None = Field(
        None, json_schema_extra=deployed("parameter", Resource.CURSOR_KEY)
    )
    git_sha: str = "dev"
    build_time: str = "dev"
    # Requests per minute per user (and per client IP) where the API is the last line (local
    # mode); 0 = off. Never applied on Lambda: API Gateway throttles there.
    api_rate_limit_per_minute: int = Field(default=600, ge=0)
    # POST /items/upload sends the file through the API (Lambda's payload limit is 6 MB, base64
    # included); larger files go straight to S3 with the presigned POST of POST /items.
    api_direct_upload_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    analyzer: Literal["auto", "anthropic", "local"] = Field(
        "auto", json_schema_extra=deployed("literal", Resource.ANTHROPIC_KEY)
    )
    anthropic_model: str = Field(
        "claude-sonnet-4-6", json_schema_extra=deployed("literal", Resource.ANTHROPIC_KEY)
    )
    anthropic_base_url: str | None = None
    anthropic_api_key_param: str | None = Field(
        None, json_schema_extra=deployed("parameter", Resource.ANTHROPIC_KEY)
    )
    anthropic_max_tokens: int = 2048
    anthropic_timeout_s: float = 60.0

    embedder: Literal["auto", "voyage", "local"] = Field(
        "auto", json_schema_extra=deployed("literal", Resource.VOYAGE_KEY)
    )
    # The offline embedder's model (with no Voyage key): all-MiniLM-L6-v2 (384-d, light and
    # fast) or all-mpnet-base-v2 (768-d, better at meaning, ~6x the CPU per text). The vector
    # column takes the model's dimension when the database is created.
    local_embedding_model: Literal["all-MiniLM-L6-v2", "all-mpnet-base-v2"] = "all-MiniLM-L6-v2"
    voyage_model: str = Field(
        "voyage-3.5-lite", json_schema_extra=deployed("literal", Resource.VOYAGE_KEY)
    )
    voyage_base_url: str | None = None
    voyage_api_key_param: str | None = Field(
        None, json_schema_extra=deployed("parameter", Resource.VOYAGE_KEY)
    )
    # Search reranking: "auto" = Voyage's reranker when a Voyage key is available, else none.
    reranker: Literal["auto", "voyage", "none"] = "auto"
    voyage_rerank_model: str = "rerank-2.5"
    # None: the configured embedder's native dimension. Part of the schema (the vector column),
    # so every function that touches the database agrees on it.
    embedding_dimension: int | None = Field(
        None, json_schema_extra=deployed("int", *_DB, Resource.VOYAGE_KEY)
    )

    thumbnail_sizes: tuple[int, ...] = (256, 1024)
    analysis_max_edge: int = Field(default=1568, ge=256)
    max_image_pixels: int = Field(default=100_000_000, ge=1_000_000)
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)

    # Search relevance thresholds (runtime.domain.search.Thresholds, where each one's scale is
    # described). Unset: the default for the configured embedder (DEFAULT_THRESHOLDS there, one
    # row per embedding model, chosen by cross-validation in benchmarks/evaluate_search.py).
    search_threshold_keyword: float | None = None
    search_threshold_semantic: float | None = None
    search_threshold_hybrid: float | None = None
    search_threshold_hybrid_keyword: float | None = None
    search_threshold_hybrid_semantic: float | None = None
    search_threshold_small_collection: float | None = None
    # Up to this many documents (after filters) a user's semantic search is an exact scan;
    # above, the HNSW index with pgvector iterative scans, visiting at most max_scan_tuples.
    search_exact_scan_max: int = Field(default=5000, ge=0)
    search_hnsw_max_scan_tuples: int = Field(default=50_000, ge=1000)

    # The assistant (runtime.domain.assistant): Claude with tools over the caller's collection.
    # "auto": Claude when an Anthropic key is available, else the offline assistant (answers
    # from search results). Conversations live in a DynamoDB table and expire after the TTL.
    assistant: Literal["auto", "anthropic", "local"] = "auto"
    conversations_table: str | None = Field(
        None, json_schema_extra=deployed("name", Resource.CONVERSATIONS)
    )
    conversation_ttl_hours: float = Field(
        24.0, gt=0, le=24 * 365, json_schema_extra=deployed("literal", Resource.CONVERSATIONS)
    )
    assistant_max_tool_rounds: int = Field(default=4, ge=1, le=20)
    # Input + output tokens one message may spend over all its model calls.
    assistant_max_tokens_per_message: int = Field(default=60_000, ge=1000)
    assistant_max_output_tokens: int = Field(default=1024, ge=64, le=8192)
    # Tokens per user per UTC day; a message asked once it is spent is refused with 429.
    assistant_daily_token_budget: int = Field(
        500_000, ge=0, json_schema_extra=deployed("int", Resource.CONVERSATIONS)
    )
    assistant_max_messages_per_conversation: int = Field(default=50, ge=2, le=500)
    # Local mode only: the emulator's DynamoDB never expires items, so the cleanup deletes them.
    conversations_sweep_expired: bool = False
    # Web search for the assistant (Tavily): offered only when a key is configured. Optional,
    # so outside the deployed contract: a stack with a key gives its parameter name to the
    # functions that declare Resource.TAVILY_KEY (tests/infra/test_infra_program.py).
    tavily_api_key_param: str | None = None
    tavily_base_url: str = "https://api.tavily.com"

    stale_upload_minutes: int = Field(default=60, ge=1)
    # An item in processing, analyzing or indexing with no progress for this long is failed
    # (``stalled``) by cleanup: longer than an event's retries can last (maximum event age 1 h).
    stale_processing_minutes: int = Field(default=120, ge=1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
