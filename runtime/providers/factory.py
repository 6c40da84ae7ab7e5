"""Choose the analyzer and the embedder for this process from the settings.

``settings.analyzer`` / ``settings.embedder``:
- ``"anthropic"`` / ``"voyage"``: the real provider (fails per item if no key is configured);
- ``"local"``: the offline provider (OCR heuristics / all-MiniLM-L6-v2);
- ``"auto"``: the real provider when its key is available (an SSM parameter name is configured,
  or the provider's environment variable is set), else the offline one.

One instance per process for each distinct relevant configuration; nothing heavy (SDK imports,
models, OCR engine) is loaded here: the providers load lazily on first use.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from runtime.adapters.secrets import get_secret
from runtime.config import LOCAL_EMBEDDING_DIMENSIONS, VOYAGE_DEFAULT_DIMENSION

if TYPE_CHECKING:
    from runtime.config import Settings
    from runtime.domain.assistant import Assistant, WebSearch
    from runtime.providers.base import Analyzer, Embedder, Reranker

_lock = threading.Lock()
_analyzers: dict[tuple[object, ...], Analyzer] = {}
_embedders: dict[tuple[object, ...], Embedder] = {}
_rerankers: dict[tuple[object, ...], Reranker] = {}


def _key_available(param_name: str | None, env_var: str) -> bool:
    """A configured SSM parameter counts as available without reading it (no AWS call here)."""
    if param_name:
        return True
    return bool(get_secret(None, env_var))


def analyzer_kind(settings: Settings) -> str:
    """``"anthropic"`` or ``"local"``, resolving ``"auto"``."""
    if settings.analyzer != "auto":
        return settings.analyzer
    if _key_available(settings.anthropic_api_key_param, "ANTHROPIC_API_KEY"):
        return "anthropic"
    return "local"


def embedder_kind(settings: Settings) -> str:
    """``"voyage"`` or ``"local"``, resolving ``"auto"``."""
    if settings.embedder != "auto":
        return settings.embedder
    if _key_available(settings.voyage_api_key_param, "VOYAGE_API_KEY"):
        return "voyage"
    return "local"


def embedding_dimension(settings: Settings) -> int:
    """The dimension of the vectors the configured embedder produces, without loading it."""
    if settings.embedding_dimension:
        return settings.embedding_dimension
    if embedder_kind(settings) == "voyage":
        return VOYAGE_DEFAULT_DIMENSION
    return LOCAL_EMBEDDING_DIMENSIONS[settings.local_embedding_model]


def assistant_kind(settings: Settings) -> str:
    """``"anthropic"`` or ``"local"`` (the offline assistant), resolving ``"auto"``."""
    if settings.assistant != "auto":
        return settings.assistant
    if _key_available(settings.anthropic_api_key_param, "ANTHROPIC_API_KEY"):
        return "anthropic"
    return "local"


def get_assistant(settings: Settings) -> Assistant:
    """A new assistant for this configuration (cheap: the SDK client is created on first use
    and the instance is kept by the caller's services)."""
    if assistant_kind(settings) == "anthropic":
        from runtime.providers.anthropic_assistant import AnthropicAssistant

        return AnthropicAssistant(settings)
    from runtime.domain.assistant import OfflineAssistant

    return OfflineAssistant()


def get_web_search(settings: Settings) -> WebSearch | None:
    """Tavily when its key is configured, else None (the tool is then not offered)."""
    if not _key_available(settings.tavily_api_key_param, "TAVILY_API_KEY"):
        return None
    from runtime.providers.tavily import TavilySearch

    return TavilySearch(settings)


def get_analyzer(settings: Settings) -> Analyzer:
    kind = analyzer_kind(settings)
    if kind == "anthropic":
        key: tuple[object, ...] = (
            kind,
            settings.anthropic_model,
            settings.anthropic_base_url,
            settings.anthropic_api_key_param,
            settings.anthropic_max_tokens,
            settings.anthropic_timeout_s,
        )
    else:
        key = (kind,)
    with _lock:
        analyzer = _analyzers.get(key)
        if analyzer is None:
            if kind == "anthropic":
                from runtime.providers.anthropic_analyzer import AnthropicAnalyzer

                analyzer = AnthropicAnalyzer(settings)
            else:
                from runtime.providers.local_analyzer import LocalAnalyzer

                analyzer = LocalAnalyzer()
            _analyzers[key] = analyzer
    return analyzer


def get_embedder(settings: Settings) -> Embedder:
    kind = embedder_kind(settings)
    if kind == "voyage":
        key: tuple[object, ...] = (
            kind,
            settings.voyage_model,
            settings.voyage_base_url,
            settings.voyage_api_key_param,
            embedding_dimension(settings),
        )
    else:
        key = (kind, settings.local_embedding_model)
    with _lock:
        embedder = _embedders.get(key)
        if embedder is None:
            if kind == "voyage":
                from runtime.providers.voyage_embedder import VoyageEmbedder

                embedder = VoyageEmbedder(settings)
            else:
                native = LOCAL_EMBEDDING_DIMENSIONS[settings.local_embedding_model]
                if settings.embedding_dimension not in (None, native):
                    raise ValueError(
                        f"the local embedder {settings.local_embedding_model} produces "
                        f"{native}-d vectors, but embedding_dimension is "
                        f"{settings.embedding_dimension}"
                    )
                embedder = _local_embedder(settings.local_embedding_model)
            _embedders[key] = embedder
    return embedder


def _local_embedder(model: str) -> Embedder:
    if model == "all-mpnet-base-v2":
        from runtime.providers.mpnet_embedder import MPNetEmbedder

        return MPNetEmbedder()
    from runtime.providers.local_embedder import LocalEmbedder

    return LocalEmbedder()


def reranker_kind(settings: Settings) -> str:
    """``"voyage"`` or ``"none"``, resolving ``"auto"``. No offline reranker ships: none that
    installs from a wheel was measured to beat the offline search (see the README's Search)."""
    if settings.reranker != "auto":
        return settings.reranker
    if _key_available(settings.voyage_api_key_param, "VOYAGE_API_KEY"):
        return "voyage"
    return "none"


def get_reranker(settings: Settings) -> Reranker | None:
    if reranker_kind(settings) == "none":
        return None
    key: tuple[object, ...] = (
        settings.voyage_rerank_model,
        settings.voyage_base_url,
        settings.voyage_api_key_param,
    )
    with _lock:
        reranker = _rerankers.get(key)
        if reranker is None:
            from runtime.providers.voyage_reranker import VoyageReranker

            reranker = _rerankers[key] = VoyageReranker(settings)
    return reranker


def reset() -> None:
    """Forget the cached instances (tests; the loaded models stay loaded)."""
    with _lock:
        _analyzers.clear()
        _embedders.clear()
        _rerankers.clear()


reset_cache = reset
