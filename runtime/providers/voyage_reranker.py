"""Voyage AI's reranker (a cross-encoder over the query and each candidate's text) through the
official ``voyageai`` SDK: ``client.rerank(query, documents, model, top_k, truncation=True)``.

The model is ``settings.voyage_rerank_model`` (``rerank-2.5``, the quality model Voyage's
documentation recommends; ``rerank-2.5-lite`` trades some quality for latency). Search calls it
while a user waits, so a call is one attempt with a short timeout; any failure raises
``RerankUnavailable`` and search keeps its own order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from runtime.providers.base import RerankUnavailable
from runtime.providers.lazy_client import LazyClient

if TYPE_CHECKING:
    import voyageai

    from runtime.config import Settings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0


class VoyageReranker:
    """:class:`~runtime.providers.base.Reranker` backed by the Voyage AI rerank API."""

    provider = "voyage"

    def __init__(self, settings: Settings, *, client: voyageai.Client | None = None) -> None:
        self.model = settings.voyage_rerank_model
        self._settings = settings
        self._client = LazyClient(self._create_client, client)
        self.total_tokens = 0

    def _create_client(self) -> voyageai.Client:
        from runtime.providers.voyage_embedder import create_client

        try:
            return create_client(self._settings, timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:
            raise RerankUnavailable(f"no Voyage client: {exc}") from exc

    def rerank(self, query: str, documents: list[str], top_k: int) -> list[tuple[int, float]]:
        if not documents or top_k < 1:
            return []
        import voyageai.error as verr

        client = self._client.get()
        try:
            result = client.rerank(
                query,
                documents,
                model=self.model,
                top_k=min(top_k, len(documents)),
                truncation=True,
            )
        except verr.VoyageError as exc:
            if isinstance(exc, verr.AuthenticationError):
                self._client.drop()  # a rotated key is read again
            raise RerankUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except (IndexError, KeyError, TypeError, ValueError) as exc:  # a reply it cannot parse
            raise RerankUnavailable(f"malformed rerank reply: {exc}") from exc
        self.total_tokens += int(getattr(result, "total_tokens", 0) or 0)
        ranked = []
        for r in result.results:
            if not 0 <= r.index < len(documents):
                raise RerankUnavailable(f"rerank reply names document {r.index}")
            ranked.append((int(r.index), float(r.relevance_score)))
        return ranked
