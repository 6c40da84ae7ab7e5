"""Housekeeping on a schedule: fail abandoned and stalled items, remove objects no item references.

An upload that never arrived fails as ``upload_abandoned`` (and its objects go). An item that made
no progress in ``processing``, ``analyzing`` or ``indexing`` for ``stale_processing_minutes``
(longer than the platform keeps retrying an event) fails at that stage as ``stalled``; its objects
stay, so the user can retry it. Together with the dead-letter consumer this is what guarantees
every item ends ``ready`` or ``failed``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from runtime.db.models import Item, ItemStatus
from runtime.domain.items import fail_item, get_item
from runtime.domain.pipeline import Pipeline, fail_and_announce
from runtime.events import ItemFailed, item_prefix
from runtime.topology import USERS_PREFIX

STAGE = "cleanup"
# In-flight statuses and the stage that owns an item in each.
STALLED_STAGES: dict[ItemStatus, str] = {
    ItemStatus.PROCESSING: "thumbnail",
    ItemStatus.ANALYZING: "analyze",
    ItemStatus.INDEXING: "embed",
}


@dataclass(frozen=True)
class CleanupReport:
    abandoned_uploads: int
    stalled_items: int
    objects_of_failed_items: int
    orphan_objects: int

    def as_metrics(self) -> dict[str, int]:
        return {
            "AbandonedUploadsFailed": self.abandoned_uploads,
            "StuckItemsFailed": self.stalled_items,
            "ObjectsOfFailedItemsDeleted": self.objects_of_failed_items,
            "OrphanObjectsDeleted": self.orphan_objects,
        }


def run_cleanup(pipeline: Pipeline, *, now: datetime | None = None) -> CleanupReport:
    now = now or datetime.now(UTC)
    settings = pipeline.settings
    upload_cutoff = now - timedelta(minutes=settings.stale_upload_minutes)
    processing_cutoff = now - timedelta(minutes=settings.stale_processing_minutes)

    stuck = _stuck_items(pipeline, ItemStatus.UPLOADING, upload_cutoff)
    abandoned = _fail_all(pipeline, stuck, "upload_abandoned", "no upload arrived in time")
    removed = _delete_objects_of(pipeline, stuck)
    stalled = 0
    for status, stage in STALLED_STAGES.items():
        for user_id, item_id in _stuck_items(pipeline, status, processing_cutoff):
            stalled += _fail_stalled(
                pipeline,
                user_id,
                item_id,
                status=status,
                stage=stage,
                cutoff=processing_cutoff,
                minutes=settings.stale_processing_minutes,
            )
    orphans = _delete_orphans(pipeline, older_than=upload_cutoff)
    return CleanupReport(abandoned, stalled, removed, orphans)


def _fail_stalled(
    pipeline: Pipeline,
    user_id: str,
    item_id: uuid.UUID,
    *,
    status: ItemStatus,
    stage: str,
    cutoff: datetime,
    minutes: int,
) -> int:
    """Fail the item if it is still in ``status`` with no update since ``cutoff``."""
    reason = f"stalled: no progress while {status} for {minutes} minutes"
    with pipeline.sessions() as session:
        item = get_item(session, user_id, item_id, lock=True)
        if item is None or item.status != status or item.updated_at >= cutoff:
            return 0  # it moved on meanwhile
        fail_item(session, item, stage=stage, reason=reason)
    pipeline.publisher.publish(
        ItemFailed(item_id=item_id, user_id=user_id, stage=stage, reason=reason)
    )
    return 1


def _stuck_items(
    pipeline: Pipeline, status: ItemStatus, cutoff: datetime
) -> list[tuple[str, uuid.UUID]]:
    with pipeline.sessions() as session:
        rows = session.execute(
            select(Item.user_id, Item.id).where(Item.status == status, Item.updated_at < cutoff)
        ).all()
    return [(row.user_id, row.id) for row in rows]


def _fail_all(
    pipeline: Pipeline, items: list[tuple[str, uuid.UUID]], reason: str, detail: str
) -> int:
    failed = 0
    for user_id, item_id in items:
        outcome = fail_and_announce(
            pipeline, user_id, item_id, stage=STAGE, reason=reason, detail=detail
        )
        failed += outcome.result == "failed"
    return failed


def _delete_objects_of(pipeline: Pipeline, items: list[tuple[str, uuid.UUID]]) -> int:
    keys = [
        obj.key
        for user_id, item_id in items
        for obj in pipeline.store.list(item_prefix(user_id, item_id))
    ]
    pipeline.store.delete(keys)
    return len(keys)


def _delete_orphans(pipeline: Pipeline, *, older_than: datetime) -> int:
    """Objects under users/ whose item row does not exist (for that same user)."""
    candidates: dict[tuple[str, str], list[str]] = {}
    for obj in pipeline.store.list(USERS_PREFIX):
        if obj.last_modified >= older_than:
            continue  # an upload may be in flight; its item row is written first anyway
        parts = obj.key.split("/")
        owner = (parts[1], parts[3]) if len(parts) >= 5 and parts[2] == "items" else ("", "")
        candidates.setdefault(owner, []).append(obj.key)

    orphan_keys: list[str] = []
    with pipeline.sessions() as session:
        for (user_id, item_id), keys in candidates.items():
            try:
                parsed = uuid.UUID(item_id)
            except ValueError:
                orphan_keys.extend(keys)  # not an item's key at all
                continue
            exists = session.scalar(
                select(Item.id).where(Item.id == parsed, Item.user_id == user_id)
            )
            if exists is None:
                orphan_keys.extend(keys)
    pipeline.store.delete(orphan_keys)
    return len(orphan_keys)
