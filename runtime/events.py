"""Event contracts: what the pipeline publishes on its bus, and the S3 event it consumes.

Every pipeline event carries ``schema_version`` so that consumers can refuse shapes they do not
know; the tenant (``user_id``) is in every event. Each event handler declares the EventBridge
envelope it parses (Powertools' ``EventBridgeModel`` around one of these; the S3 "Object
Created" notification is Powertools' own model): the parser's models are loaded by the event
handlers only, never by the API, which publishes events and parses none.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.topology import EventType

SCHEMA_VERSION = "1"
_ORIGINAL_KEY = re.compile(
    r"^users/(?P<user_id>[^/]+)/items/(?P<item_id>[0-9a-fA-F-]{36})/original$"
)


class PipelineEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    detail_type: ClassVar[EventType]

    schema_version: Literal["1"] = SCHEMA_VERSION
    item_id: uuid.UUID
    user_id: Annotated[str, Field(min_length=1, max_length=128)]


class ImageProcessed(PipelineEvent):
    detail_type = EventType.IMAGE_PROCESSED
    generation: int
    analysis_key: str
    width: int
    height: int
    content_type: str


class AnalysisRequested(PipelineEvent):
    """A re-analysis asked for by the user (the API bumps the item's generation first)."""

    detail_type = EventType.ANALYSIS_REQUESTED
    generation: int


class ItemAnalyzed(PipelineEvent):
    detail_type = EventType.ITEM_ANALYZED
    generation: int
    analysis_version: int


class ItemIndexed(PipelineEvent):
    detail_type = EventType.ITEM_INDEXED
    analysis_version: int


class ItemFailed(PipelineEvent):
    detail_type = EventType.ITEM_FAILED
    stage: str
    reason: str


class OriginalKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    item_id: uuid.UUID

    @classmethod
    def parse(cls, key: str) -> OriginalKey | None:
        """The tenant and item of an original's key, or None for any other key."""
        match = _ORIGINAL_KEY.match(key)
        if not match:
            return None
        return cls(user_id=match["user_id"], item_id=uuid.UUID(match["item_id"]))


def item_of(event: dict[str, Any]) -> str | None:
    """The item an event delivered to a pipeline function is about, unparsed (for reports and
    logs): pipeline events name it, S3's names its original's key; None for any other event."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return None
    if detail.get("item_id") is not None:
        return str(detail["item_id"])
    s3_object = detail.get("object")
    key = s3_object.get("key") if isinstance(s3_object, dict) else None
    original = OriginalKey.parse(key) if isinstance(key, str) else None
    return str(original.item_id) if original else None


def item_prefix(user_id: str, item_id: uuid.UUID) -> str:
    return f"users/{user_id}/items/{item_id}/"


def original_key(user_id: str, item_id: uuid.UUID) -> str:
    return f"{item_prefix(user_id, item_id)}original"


def derived_key(user_id: str, item_id: uuid.UUID, name: str, extension: str) -> str:
    return f"{item_prefix(user_id, item_id)}derived/{name}.{extension}"


class QuestionAsked(BaseModel):
    """A user's question in a conversation, stored as a pending message; the assistant answers.

    The tenant is the API's verified caller; the assistant only ever reads that tenant's data.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    detail_type: ClassVar[EventType] = EventType.QUESTION_ASKED

    schema_version: Literal["1"] = SCHEMA_VERSION
    user_id: Annotated[str, Field(min_length=1, max_length=128)]
    conversation_id: uuid.UUID
    message_id: uuid.UUID


BusEvent = PipelineEvent | QuestionAsked
