"""Request and response models: the API's contract, and the OpenAPI document's components."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from runtime.domain.vocabulary import ItemStatus, SearchMode

# No control characters (they end up in PostgreSQL text, which refuses NUL).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339_only(value: object) -> object:
    """The documented format only: pydantic alone would also take `0` (a Unix time) or a date."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-11-23T10:00:00Z")
    return value


Rfc3339DateTime = Annotated[datetime, BeforeValidator(_rfc3339_only)]


class ImageContentType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    WEBP = "image/webp"
    GIF = "image/gif"
    HEIC = "image/heic"
    HEIF = "image/heif"


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=255,
            pattern=PRINTABLE,
            description="The file's name, kept for display",
            examples=["beach.jpg"],
        ),
    ]
    content_type: Annotated[
        ImageContentType,
        Field(description="The file's media type; the upload must send exactly this type"),
    ]
    size: Annotated[
        int,
        Field(
            ge=1,
            description=(
                "The file's size in bytes; at most the service's upload limit "
                "(25 MiB by default), else 413"
            ),
            examples=[2_400_000],
        ),
    ]
    sha256: Annotated[
        str | None,
        Field(
            pattern=r"^[0-9a-f]{64}$",
            description=(
                "Optional SHA-256 of the file (lower-case hex). When the caller already has an "
                "item with these bytes, the API answers 409 `duplicate_item` with its `item_id` "
                "instead of creating a second one"
            ),
        ),
    ] = None


class Failure(BaseModel):
    stage: str | None = Field(description="The pipeline stage that failed, e.g. `thumbnail`")
    reason: str | None = Field(description="Why, e.g. `not_an_image: …`")


class ItemWarning(BaseModel):
    code: str = Field(description="e.g. `exif_unreadable`")
    detail: str = Field(description="What was wrong and what was done instead")


class ItemSummary(BaseModel):
    id: uuid.UUID
    status: ItemStatus
    file_name: str | None
    content_type: str | None = Field(
        description="Detected from the bytes once processed; the declared type before that"
    )
    size: int | None = Field(description="Bytes (declared until the upload is processed)")
    width: int | None
    height: int | None
    category: str | None = Field(description="From the latest analysis")
    headline: str | None = Field(description="From the latest analysis")
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    failure: Failure | None = Field(description="Set when status is `failed`")
    warnings: list[ItemWarning] = Field(
        default_factory=list,
        description=(
            "Problems with the file that did not stop it from being processed, e.g. "
            "`exif_unreadable` (the picture is kept; its EXIF orientation is not applied)"
        ),
    )
    thumbnail_url: str | None = Field(
        description="Short-lived presigned GET URL of the small thumbnail, once it exists"
    )


class UploadForm(BaseModel):
    """An S3 presigned POST: send a multipart/form-data POST to ``url`` with every field of
    ``fields`` and then the file as the last field, named ``file``."""

    url: str
    method: Literal["POST"] = "POST"
    fields: dict[str, str]
    expires_at: datetime
    content_type: ImageContentType = Field(description="The only Content-Type S3 will accept")
    max_size: int = Field(description="S3 refuses a larger file (and an empty one)")


class CreateUploadResponse(BaseModel):
    item: ItemSummary
    upload: UploadForm


class ItemPage(BaseModel):
    items: list[ItemSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


class AnalysisVersion(BaseModel):
    version: int
    generation: int
    provider: str = Field(description="`anthropic`, or `local` for the offline analyzer")
    model: str
    input_tokens: int = Field(description="Input tokens billed at the full price (not cached)")
    cache_creation_input_tokens: int = Field(description="Input tokens written to the prompt cache")
    cache_read_input_tokens: int = Field(description="Input tokens read from the prompt cache")
    output_tokens: int
    latency_ms: int
    created_at: datetime
    result: dict[str, Any] = Field(description="The structured analysis (category, headline, …)")


class ItemUrls(BaseModel):
    original: str | None = Field(description="Presigned GET URL of the original, once uploaded")
    download: str | None = Field(
        description="The original again, served as an attachment under its file name"
    )
    thumbnails: dict[str, str] = Field(description="Rendition name (`thumb_256`, …) to URL")
    expires_at: datetime


class ItemDetail(ItemSummary):
    generation: int = Field(description="Bumped by each analysis requested")
    analysis: AnalysisVersion | None = Field(description="The latest analysis, if any")
    urls: ItemUrls


class AnalysisList(BaseModel):
    item_id: uuid.UUID
    analyses: list[AnalysisVersion] = Field(description="Newest version first")


class SearchResult(BaseModel):
    item_id: uuid.UUID
    score: float = Field(
        description=(
            "Relevance on the mode's scale: keyword [0, 1] (IDF-weighted share of the query "
            "found, by field importance), semantic [-1, 1] (cosine similarity), hybrid (0, 1] "
            "(normalised reciprocal-rank fusion; 1 = first in both)"
        )
    )
    headline: str | None
    category: str | None
    summary: str | None
    status: ItemStatus
    file_name: str | None = Field(description="The uploaded file's name")
    created_at: datetime
    thumbnail_url: str | None = Field(description="Short-lived presigned GET URL")


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode
    results: list[SearchResult] = Field(description="Best first; empty when nothing is relevant")
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["reachable"]
    migrations: Literal["current"]


class VersionInfo(BaseModel):
    git_sha: str = Field(description="The commit the image was built from; `dev` locally")
    build_time: str = Field(description="When the image was built; `dev` locally")


# -- the assistant -------------------------------------------------------------------------------


class CreateConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[
        str | None,
        Field(min_length=1, max_length=200, pattern=PRINTABLE, description="For display"),
    ] = None


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4000,
            pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
            description="The question, in plain text",
            examples=["Which restaurants in Lisbon did I save?"],
        ),
    ]


class CitationOut(BaseModel):
    kind: Literal["item", "web"] = Field(description="One of the caller's items, or a web page")
    title: str = Field(description="The item's headline, or the page's title")
    item_id: uuid.UUID | None = Field(default=None, description="For `item` citations")
    category: str | None = None
    thumbnail_url: str | None = Field(
        default=None, description="Short-lived presigned GET URL of the item's small thumbnail"
    )
    url: str | None = Field(default=None, description="For `web` citations")
    cited_text: str | None = Field(default=None, description="The passage the answer relied on")


class AnswerUsage(BaseModel):
    provider: str = Field(description="`anthropic`, or `offline` (no model: search results)")
    model: str
    input_tokens: int = Field(description="Input tokens of every model call, cached or not")
    output_tokens: int
    cache_read_input_tokens: int = Field(
        default=0,
        description="The part of `input_tokens` read from the prompt cache (billed at a tenth)",
    )
    tool_rounds: int = Field(description="Rounds of tool calls the answer took")
    latency_ms: int = Field(description="Time spent answering")


class MessageFailure(BaseModel):
    reason: str = Field(description="e.g. `assistant_unavailable`, `timed_out`")
    message: str


class MessageStatusName(StrEnum):
    PENDING = "pending"
    ANSWERING = "answering"
    DONE = "done"
    FAILED = "failed"


class ConversationMessage(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    question: str
    status: MessageStatusName = Field(
        description="`pending` → `answering` → `done` (or `failed`); poll until it ends"
    )
    answer: str | None = Field(description="Set when `done`")
    citations: list[CitationOut] = Field(description="What the answer used, in order")
    stop_reason: Literal["answered", "max_tool_rounds", "token_limit"] | None = Field(
        description="`answered`, or the limit that cut the answer short"
    )
    usage: AnswerUsage | None
    created_at: datetime
    answered_at: datetime | None
    failure: MessageFailure | None = Field(description="Set when `failed`")


class ConversationSummary(BaseModel):
    id: uuid.UUID
    title: str | None
    created_at: datetime
    expires_at: datetime = Field(description="The conversation and its messages are deleted then")
    message_count: int


class ConversationDetail(ConversationSummary):
    messages: list[ConversationMessage] = Field(description="Oldest first")


class ConversationList(BaseModel):
    conversations: list[ConversationSummary] = Field(description="Newest first")
