"""Voyage AI text embeddings through the official ``voyageai`` SDK.

Documents are embedded with ``input_type="document"``, search queries with ``"query"``
(Voyage prepends a different instruction to each), at ``output_dimension`` =
``settings.embedding_dimension`` or 1024.

Retries: voyageai 0.5 retries only 429, 502-504 and read timeouts, with a fixed 1-16 s
exponential wait, and not 500 or connection errors. This module therefore asks the SDK for a
single attempt per call (``max_retries=1``: the SDK counts attempts) and retries itself: 429,
5xx, timeouts and connection failures, ``max_attempts`` in all, with exponential backoff that
honours ``Retry-After`` (or ``retry-after-ms``). Still failing → ``TransientError`` (the
platform retries the event, then dead-letters it). 401/403 →
``PermanentError("embedding_auth_failed")``; other 4xx →
``PermanentError("embedding_request_rejected")``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

from runtime.adapters.secrets import get_secret
from runtime.config import VOYAGE_DEFAULT_DIMENSION
from runtime.domain.errors import PermanentError, TransientError
from runtime.providers.lazy_client import LazyClient

if TYPE_CHECKING:
    import voyageai

    from runtime.config import Settings

log = logging.getLogger(__name__)

STAGE = "embed"
BATCH_SIZE = 128  # the API takes up to 1000 texts and a token budget per request
REQUEST_TIMEOUT_S = 30.0


class VoyageEmbedder:
    """:class:`~runtime.providers.base.Embedder` backed by the Voyage AI embeddings API."""

    provider = "voyage"

    def __init__(
        self,
        settings: Settings,
        *,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 16.0,
        batch_size: int = BATCH_SIZE,
        client: voyageai.Client | None = None,
    ) -> None:
        self.model = settings.voyage_model
        self.dimension = settings.embedding_dimension or VOYAGE_DEFAULT_DIMENSION
        self._settings = settings
        self._max_attempts = max(1, max_attempts)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._batch_size = batch_size
        self._client = LazyClient(self._create_client, client)
        self.total_tokens = 0  # tokens billed by this instance so far

    def _create_client(self) -> voyageai.Client:
        return create_client(self._settings, timeout=REQUEST_TIMEOUT_S)

    # -- Embedder -------------------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors += self._embed(texts[start : start + self._batch_size], "document")
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], "query")[0]

    # -- internals ------------------------------------------------------------------------------

    def _embed(self, texts: list[str], input_type: str) -> list[list[float]]:
        import voyageai.error as verr

        client = self._client.get()
        for attempt in range(1, self._max_attempts + 1):
            try:
                result = client.embed(
                    texts,
                    model=self.model,
                    input_type=input_type,
                    output_dimension=self.dimension,
                    truncation=True,
                )
            except (
                verr.RateLimitError,
                verr.ServiceUnavailableError,
                verr.ServerError,
                verr.Timeout,
                verr.TryAgain,
                verr.APIConnectionError,
            ) as exc:
                failure: Exception = exc
            except verr.VoyageError as exc:
                status = exc.http_status or 0
                if isinstance(exc, verr.AuthenticationError) or status in (401, 403):
                    self._client.drop()  # a rotated key is read again
                    raise PermanentError(
                        "embedding_auth_failed", _describe(exc), stage=STAGE
                    ) from exc
                if 400 <= status < 500 and status not in (408, 409, 429):
                    raise PermanentError(
                        "embedding_request_rejected", _describe(exc), stage=STAGE
                    ) from exc
                failure = exc  # 5xx surfaced as a generic APIError, or no status at all
            else:
                return self._check(result, len(texts))

            if attempt == self._max_attempts:
                raise TransientError(
                    f"Voyage API still failing after {attempt} attempts: {_describe(failure)}"
                ) from failure
            delay = self._delay(attempt, failure)
            log.warning(
                "Voyage API %s (attempt %d of %d), retrying in %.2f s",
                type(failure).__name__,
                attempt,
                self._max_attempts,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _check(self, result: Any, expected: int) -> list[list[float]]:
        embeddings = [list(map(float, v)) for v in result.embeddings]
        self.total_tokens += int(getattr(result, "total_tokens", 0) or 0)
        if len(embeddings) != expected:
            raise TransientError(f"Voyage returned {len(embeddings)} vectors for {expected} texts")
        wrong = {len(v) for v in embeddings if len(v) != self.dimension}
        if wrong:
            raise PermanentError(
                "embedding_dimension_mismatch",
                f"{self.model} returned {sorted(wrong)}-d vectors, expected {self.dimension}",
                stage=STAGE,
            )
        return embeddings

    def _delay(self, attempt: int, failure: Exception) -> float:
        headers = getattr(failure, "headers", None) or {}
        retry_after = _seconds(headers.get("retry-after-ms"), 0.001)
        if retry_after is None:
            retry_after = _seconds(headers.get("retry-after"), 1.0)
        if retry_after is not None and 0 <= retry_after <= self._max_backoff_s:
            return retry_after
        base = min(self._backoff_s * 2 ** (attempt - 1), self._max_backoff_s)
        return base * (0.75 + 0.5 * random.random())


def create_client(settings: Settings, *, timeout: float) -> voyageai.Client:
    """A ``voyageai.Client`` making one attempt per call, with the configured key and base URL.
    Raises ``TransientError`` if the key cannot be read now, ``PermanentError`` if none is set."""
    import voyageai

    try:
        api_key = get_secret(settings.voyage_api_key_param, "VOYAGE_API_KEY")
    except Exception as exc:  # SSM throttled or unreachable: retry the event later
        raise TransientError(f"could not read the Voyage API key: {type(exc).__name__}") from exc
    if not api_key:
        raise PermanentError(
            "embedding_auth_failed", "no Voyage API key is configured", stage=STAGE
        )
    return voyageai.Client(
        api_key=api_key,
        max_retries=1,  # one attempt per call; callers retry (see the module docstring)
        timeout=timeout,
        base_url=settings.voyage_base_url or None,
    )


def _seconds(value: Any, unit: float) -> float | None:
    try:
        return float(value) * unit
    except (TypeError, ValueError):
        return None


def _describe(exc: Exception) -> str:
    status = getattr(exc, "http_status", None)
    message = getattr(exc, "user_message", None) or str(exc)
    prefix = f"HTTP {status} " if status else ""
    return f"{prefix}{type(exc).__name__}: {message}"[:500]
