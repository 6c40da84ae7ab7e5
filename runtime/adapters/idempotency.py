"""Powertools idempotency (DynamoDB) as the pipeline's CallGuard for paid model calls.

A second delivery of the same request gets the stored result instead of a second call; one that
arrives while the first is still running raises ``IdempotencyAlreadyInProgressError`` and so is
retried later. The in-progress lock expires with the Lambda's remaining time, so a crashed
attempt does not block its retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RESULT_RETENTION_SECONDS = 7 * 24 * 3600


class IdempotentCalls:
    """Powertools' idempotency machinery is imported and built on first use, not at cold start."""

    def __init__(self, table_name: str, dynamodb_client: Any) -> None:
        self._table_name = table_name
        self._client = dynamodb_client
        self._config: Any = None
        self._guarded: Callable[..., dict[str, Any]] | None = None
        self._pending: Callable[[], dict[str, Any]] | None = None

    def _build(self) -> Callable[..., dict[str, Any]]:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        self._config = IdempotencyConfig(expires_after_seconds=RESULT_RETENTION_SECONDS)
        persistence = DynamoDBPersistenceLayer(
            table_name=self._table_name, boto3_client=self._client
        )

        @idempotent_function(
            data_keyword_argument="request",
            persistence_store=persistence,
            config=self._config,
            key_prefix="collections",
        )
        def _guarded(request: dict[str, str]) -> dict[str, Any]:
            assert self._pending is not None
            return self._pending()

        return _guarded

    def _ready(self) -> Callable[..., dict[str, Any]]:
        if self._guarded is None:
            self._guarded = self._build()
        return self._guarded

    def register_context(self, context: Any) -> None:
        """Bind the in-progress expiry to this invocation's remaining time."""
        self._ready()
        self._config.register_lambda_context(context)

    def run(self, key: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        guarded = self._ready()
        self._pending = call
        try:
            return guarded(request={"key": key})
        finally:
            self._pending = None
