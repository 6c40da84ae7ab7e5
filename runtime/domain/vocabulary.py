"""Names the API, the domain and the database share: an item's status, the search modes, the
largest search page. Plain enums and constants, importable without the ORM, so that the HTTP API
declares its routes (and a cold start builds the app) without loading SQLAlchemy."""

from enum import StrEnum


class ItemStatus(StrEnum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    ANALYZING = "analyzing"
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"


class SearchMode(StrEnum):
    KEYWORD = "keyword"
    SEMANTIC = "semantic"
    HYBRID = "hybrid"


MAX_LIMIT = 100  # search page size is clamped to [1, MAX_LIMIT]
