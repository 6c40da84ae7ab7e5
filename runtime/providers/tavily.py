"""Web search for the assistant through Tavily's search API (``POST /search``).

Offered to the model only when a key is configured: on AWS an SSM SecureString
(``/collections/<stack>/tavilyApiKey``), locally ``TAVILY_API_KEY``. Results are bounded (count
and characters) before the model reads them; a failed search is a tool error the model reads,
never a failed answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from runtime.adapters.secrets import get_secret
from runtime.domain.assistant import WebPage

if TYPE_CHECKING:
    from runtime.config import Settings

MAX_CONTENT_CHARS = 1200
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class WebSearchFailed(Exception):
    pass


class TavilySearch:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def search(self, query: str, *, max_results: int) -> list[WebPage]:
        key = get_secret(self._settings.tavily_api_key_param, "TAVILY_API_KEY")
        if not key:
            raise WebSearchFailed("no Tavily API key is configured")
        try:
            response = httpx.post(
                f"{self._settings.tavily_base_url.rstrip('/')}/search",
                json={"query": query[:400], "max_results": max_results, "search_depth": "basic"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=TIMEOUT,
            )
            response.raise_for_status()
            results = response.json().get("results") or []
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            raise WebSearchFailed(f"web search failed: {type(error).__name__}") from error
        pages = []
        for result in results[:max_results]:
            if not isinstance(result, dict) or not str(result.get("url", "")).startswith("http"):
                continue
            pages.append(
                WebPage(
                    url=str(result["url"])[:2000],
                    title=str(result.get("title") or "")[:300],
                    content=str(result.get("content") or "")[:MAX_CONTENT_CHARS],
                )
            )
        return pages
