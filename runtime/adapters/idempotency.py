"""Powertools idempotency (DynamoDB) as the pipeline's CallGuard for paid model calls.

A second delivery of the same request gets the stored result instead of a second call. One that
arrives while the record is "in progress" waits: the first attempt may still finish (then its
result is returned), or it crashed (a killed worker, an out-of-memory kill) and its record expires
with that invocation's timeout, after which this delivery makes the call itself. A crashed attempt
is never counted as a failure of the call; if the wait outlasts this invocation's own time the
delivery raises a ``TransientError`` and is retried like any transient failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runtime.domain.errors import TransientError

RESULT_RETENTION_SECONDS = 7 * 24 * 3600
WAIT_POLL_SECONDS = 0.5
# Stop waiting this long before the invocation's own timeout (to report, not be killed).
WAIT_MARGIN_SECONDS = 2.0


class IdempotentCalls:
    """Powertools' idempotency machinery is imported and built on first use, not at cold start."""

    def __init__(self, table_name: str, dynamodb_client: Any) -> None:
        self._table_name = table_name
        self._client = dynamodb_client
        self._config: Any = None
        self._guarded: Callable[..., dict[str, Any]] | None = None
        self._pending: Callable[[], dict[str, Any]] | None = None
        self._context: Any = None
        self.waited_s = 0.0

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
        self._context = context

    def _time_left_s(self) -> float:
        if self._context is None:
            return 0.0
        return self._context.get_remaining_time_in_millis() / 1000 - WAIT_MARGIN_SECONDS

    def run(self, key: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        guarded = self._ready()
        self._pending = call
        try:
            while True:
                try:
                    return guarded(request={"key": key})
                except Exception as error:
                    from aws_lambda_powertools.utilities.idempotency.exceptions import (
                        IdempotencyAlreadyInProgressError,
                    )

                    if not isinstance(error, IdempotencyAlreadyInProgressError):
                        raise
                    if self._time_left_s() < WAIT_POLL_SECONDS:
                        raise TransientError(
                            f"{key}: another attempt is still in progress"
                        ) from error
                    time.sleep(WAIT_POLL_SECONDS)
                    self.waited_s += WAIT_POLL_SECONDS
        finally:
            self._pending = None
