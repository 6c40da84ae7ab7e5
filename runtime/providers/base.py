"""The provider interfaces: an image analyzer, a text embedder and a reranker.

Real providers (Anthropic, Voyage AI) and offline ones (OCR heuristics, a local MiniLM) sit
behind the same two protocols; ``runtime.providers.factory`` picks one per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from runtime.domain.analysis import Analysis


@dataclass(frozen=True)
class AnalysisResult:
    """An analysis plus what it cost: who produced it, tokens, wall-clock latency.

    ``input_tokens`` is the uncached input; prompt-cache writes and reads are counted apart (the
    provider bills them at different prices)."""

    analysis: Analysis
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@runtime_checkable
class Analyzer(Protocol):
    provider: str
    model: str

    def analyze(self, image: bytes, content_type: str) -> AnalysisResult:
        """Analyze one image (the downscaled analysis derivative, long edge <= 1568 px).

        Raises ``PermanentError`` when retrying cannot help and ``TransientError`` when it can.
        """
        ...


@runtime_checkable
class Embedder(Protocol):
    provider: str
    model: str
    dimension: int

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector per text, for storage."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """One vector for a search query (asymmetric models embed queries differently)."""
        ...


@runtime_checkable
class Reranker(Protocol):
    provider: str
    model: str

    def rerank(self, query: str, documents: list[str], top_k: int) -> list[tuple[int, float]]:
        """``(index into documents, relevance score in [0, 1])`` for the ``top_k`` most relevant
        documents, most relevant first. Raises ``RerankUnavailable`` when it cannot answer."""
        ...


class RerankUnavailable(RuntimeError):
    """The reranker could not answer (no key, network, quota, a malformed reply): search falls
    back to its own order."""
