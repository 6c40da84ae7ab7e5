"""Powertools idempotency (DynamoDB) as the pipeline's CallGuard for paid model calls.

A second delivery of the same request gets the stored result instead of a second call; one that
arrives while the first is still running raises ``IdempotencyAlreadyInProgressError`` and so is
retried later. The in-progress lock expires with the Lambda's remaining time, so a crashed
attempt does not block its retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

RESULT_RETENTION_SECONDS = 7 * 24 * 3600


class IdempotentCalls:
    def __init__(self, table_name: str, dynamodb_client: Any) -> None:
        self.config = IdempotencyConfig(expires_after_seconds=RESULT_RETENTION_SECONDS)
        persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client)
        self._pending: Callable[[], dict[str, Any]] | None = None

        @idempotent_function(
            data_keyword_argument="request",
            persistence_store=persistence,
            config=self.config,
            key_prefix="collections",
        )
        def _guarded(request: dict[str, str]) -> dict[str, Any]:
            assert self._pending is not None
            return self._pending()

        self._guarded = _guarded

    def register_context(self, context: Any) -> None:
        """Bind the in-progress expiry to this invocation's remaining time."""
        self.config.register_lambda_context(context)

    def run(self, key: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self._pending = call
        try:
            return self._guarded(request={"key": key})
        finally:
            self._pending = None
