"""Housekeeping on a schedule: fail abandoned items and remove objects no item references."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from runtime.db.models import Item, ItemStatus
from runtime.domain.pipeline import Pipeline, fail_and_announce
from runtime.events import item_prefix
from runtime.topology import USERS_PREFIX

STAGE = "cleanup"


@dataclass(frozen=True)
class CleanupReport:
    abandoned_uploads: int
    stuck_processing: int
    objects_of_failed_items: int
    orphan_objects: int

    def as_metrics(self) -> dict[str, int]:
        return {
            "AbandonedUploadsFailed": self.abandoned_uploads,
            "StuckItemsFailed": self.stuck_processing,
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
    stalled = _stuck_items(pipeline, ItemStatus.PROCESSING, processing_cutoff)
    stuck_failed = _fail_all(pipeline, stalled, "processing_timeout", "thumbnailing never finished")
    removed += _delete_objects_of(pipeline, stalled)
    orphans = _delete_orphans(pipeline, older_than=upload_cutoff)
    return CleanupReport(abandoned, stuck_failed, removed, orphans)


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
