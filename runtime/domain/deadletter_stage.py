"""What exhausted its retries: fail its item with the stage and a reason, so every item ends.

An event that a pipeline function could not handle in its attempts (an out-of-memory kill, a
timeout, a model API that stayed unreachable) lands in that function's dead-letter queue. Two
shapes arrive there: Lambda's asynchronous-invocation failure record (``requestContext``,
``requestPayload`` = the event, ``responsePayload`` = the last error), and, from EventBridge when
it could not invoke the function at all, the event itself with the error in message attributes.

The item is failed only if it is still where that event left it (same stage, same generation):
a dead letter about an analysis that a newer re-analysis superseded changes nothing. The reason
is ``retries_exhausted: <error type>: <message>``; the user can retry the item
(``POST /items/{id}/reanalyze``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from runtime.db.models import Item, ItemStatus
from runtime.domain.items import fail_item, get_item
from runtime.domain.pipeline import Outcome, Pipeline
from runtime.events import ItemFailed, OriginalKey
from runtime.topology import function_for_event

REASON = "retries_exhausted"
_MESSAGE_CHARS = 300

# The item statuses a stage's event leaves the item in while that stage works on it.
_IN_STAGE: dict[str, tuple[ItemStatus, ...]] = {
    "thumbnail": (ItemStatus.UPLOADING, ItemStatus.PROCESSING),
    "analyze": (ItemStatus.ANALYZING,),
    "embed": (ItemStatus.INDEXING,),
}


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event and the last error it met."""

    event: dict[str, Any]
    error_type: str
    error_message: str
    attempts: int | None = None

    @classmethod
    def from_message(cls, body: str | dict[str, Any], attributes: dict[str, Any]) -> DeadLetter:
        """Parse an SQS message body (either shape) and its message attributes."""
        import json

        payload = json.loads(body) if isinstance(body, str) else body
        if isinstance(payload, dict) and "requestPayload" in payload:
            response = payload.get("responsePayload") or {}
            context = payload.get("requestContext") or {}
            if not isinstance(response, dict):
                response = {"errorMessage": str(response)}
            return cls(
                event=payload.get("requestPayload") or {},
                error_type=str(
                    response.get("errorType") or context.get("condition") or "UnknownError"
                ),
                error_message=str(response.get("errorMessage") or ""),
                attempts=context.get("approximateInvokeCount"),
            )
        return cls(
            event=payload if isinstance(payload, dict) else {},
            error_type=_attribute(attributes, "ERROR_CODE") or "DeliveryFailed",
            error_message=_attribute(attributes, "ERROR_MESSAGE"),
        )

    @property
    def detail(self) -> str:
        message = " ".join(self.error_message.split())[:_MESSAGE_CHARS]
        return f"{self.error_type}: {message}" if message else self.error_type


def _attribute(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name) or {}
    if isinstance(value, dict):
        return str(value.get("stringValue") or value.get("StringValue") or "")
    return str(value)


@dataclass(frozen=True)
class _Target:
    stage: str
    user_id: str
    item_id: uuid.UUID
    generation: int | None


def _target(event: dict[str, Any]) -> _Target | None:
    fn = function_for_event(str(event.get("detail-type", "")), str(event.get("source", "")))
    if fn is None or fn.name not in _IN_STAGE:
        return None
    detail = event.get("detail") or {}
    if fn.name == "thumbnail":
        key = str((detail.get("object") or {}).get("key", ""))
        parsed = OriginalKey.parse(key)
        return parsed and _Target(fn.name, parsed.user_id, parsed.item_id, None)
    try:
        return _Target(
            fn.name,
            str(detail["user_id"]),
            uuid.UUID(str(detail["item_id"])),
            int(detail["generation"]),
        )
    except (KeyError, ValueError, TypeError):
        return None


def _still_there(item: Item, target: _Target) -> bool:
    if item.status not in {str(s) for s in _IN_STAGE[target.stage]}:
        return False
    return target.generation is None or target.generation == item.generation


def fail_dead_lettered(pipeline: Pipeline, letter: DeadLetter) -> Outcome:
    target = _target(letter.event)
    if target is None:
        return Outcome("skipped", f"no item to fail for this event ({letter.detail})")
    ref = str(target.item_id)
    reason = f"{REASON}: {letter.detail}"
    with pipeline.sessions() as session:
        item = get_item(session, target.user_id, target.item_id, lock=True)
        if item is None:
            return Outcome("skipped", "item no longer exists", ref)
        if not _still_there(item, target):
            return Outcome(
                "skipped", f"item moved on (now {item.status}, generation {item.generation})", ref
            )
        fail_item(session, item, stage=target.stage, reason=reason)
    pipeline.publisher.publish(
        ItemFailed(
            item_id=target.item_id, user_id=target.user_id, stage=target.stage, reason=reason
        )
    )
    return Outcome("failed", reason, ref)
