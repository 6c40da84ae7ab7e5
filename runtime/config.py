"""Runtime configuration, read once per process from the environment (prefix ``COLLECTIONS_``).

Secrets are never configuration values: on AWS the settings hold SSM parameter *names*
(``*_api_key_param``) and the values are read at run time (see ``runtime.adapters.secrets``);
locally the providers' own environment variables (``ANTHROPIC_API_KEY``, ``VOYAGE_API_KEY``)
are used.
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_EMBEDDING_DIMENSION = 384
VOYAGE_DEFAULT_DIMENSION = 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLLECTIONS_", extra="ignore")

    stack: str = "local"
    region: str = "us-east-1"
    aws_endpoint_url: str | None = None

    # Database: a full URL locally; on AWS host/name/user plus the RDS-managed secret.
    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "collections"
    db_secret_arn: str | None = None

    bucket: str = "collections-local"
    event_bus_name: str = "collections-local"
    event_source: str = "collections.pipeline"  # = topology.PIPELINE_EVENT_SOURCE
    idempotency_table: str | None = None

    analyzer: Literal["auto", "anthropic", "local"] = "auto"
    anthropic_model: str = "claude-sonnet-4-6"
    anthropic_base_url: str | None = None
    anthropic_api_key_param: str | None = None
    anthropic_max_tokens: int = 2048
    anthropic_timeout_s: float = 60.0

    embedder: Literal["auto", "voyage", "local"] = "auto"
    voyage_model: str = "voyage-3.5-lite"
    voyage_base_url: str | None = None
    voyage_api_key_param: str | None = None
    # None: the configured embedder's native dimension.
    embedding_dimension: int | None = None

    thumbnail_sizes: tuple[int, ...] = (256, 1024)
    analysis_max_edge: int = Field(default=1568, ge=256)
    max_image_pixels: int = Field(default=100_000_000, ge=1_000_000)
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)

    stale_upload_minutes: int = Field(default=60, ge=1)
    stale_processing_minutes: int = Field(default=120, ge=1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
