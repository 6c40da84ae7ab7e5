"""What every pipeline stage is given, and what it returns."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from runtime.config import Settings
from runtime.domain.ports import BlobStore, EventPublisher
from runtime.events import ItemFailed
from runtime.providers.base import Analyzer, Embedder

if TYPE_CHECKING:  # the ORM is imported by the first stage that uses it, not at cold start
    from sqlalchemy.orm import Session


class CallGuard(Protocol):
    """Runs a paid call at most once per key (the second caller gets the first result)."""

    def run(self, key: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]: ...


class UnguardedCalls:
    def run(self, key: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return call()


@dataclass
class Pipeline:
    settings: Settings
    sessions: Callable[[], AbstractContextManager[Session]]
    store: BlobStore
    publisher: EventPublisher
    analyzer: Callable[[], Analyzer]
    embedder: Callable[[], Embedder]
    model_calls: CallGuard = field(default_factory=UnguardedCalls)


@dataclass(frozen=True)
class Outcome:
    """What a stage did with one event; logged by the handler and returned to the caller."""

    result: Literal["done", "failed", "skipped", "re-emitted"]
    detail: str = ""
    item_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"result": self.result, "detail": self.detail, "item_id": self.item_id}


def fail_and_announce(
    pipeline: Pipeline,
    user_id: str,
    item_id: uuid.UUID,
    *,
    stage: str,
    reason: str,
    detail: str = "",
) -> Outcome:
    """Fail the item (if it is still in flight) and publish ItemFailed. Never retried."""
    from runtime.domain.items import fail_item, get_item

    text = f"{reason}: {detail}" if detail else reason
    with pipeline.sessions() as session:
        item = get_item(session, user_id, item_id, lock=True)
        if item is None or not fail_item(session, item, stage=stage, reason=text):
            return Outcome("skipped", f"item not in flight; not failed ({text})", str(item_id))
    pipeline.publisher.publish(
        ItemFailed(item_id=item_id, user_id=user_id, stage=stage, reason=text)
    )
    return Outcome("failed", text, str(item_id))
