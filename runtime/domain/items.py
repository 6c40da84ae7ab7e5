"""Item lifecycle: creation, guarded state transitions, failure. Always scoped to one tenant."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from runtime.db.models import Analysis, Item, ItemStatus
from runtime.events import original_key

MAX_REASON_LENGTH = 1000


def create_item(
    session: Session,
    *,
    user_id: str,
    file_name: str | None,
    content_type: str | None,
    byte_size: int | None,
    sha256: str | None = None,
) -> Item:
    item_id = uuid.uuid4()
    item = Item(
        id=item_id,
        user_id=user_id,
        status=ItemStatus.UPLOADING,
        file_name=file_name,
        declared_content_type=content_type,
        byte_size=byte_size,
        sha256=sha256,  # known (or declared) at upload; the pipeline records the real digest
        original_key=original_key(user_id, item_id),
        derived_keys={},
        generation=0,
    )
    session.add(item)
    session.flush()
    return item


def get_item(
    session: Session, user_id: str, item_id: uuid.UUID, *, lock: bool = False
) -> Item | None:
    query = select(Item).where(Item.id == item_id, Item.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def transition(
    session: Session,
    item: Item,
    *,
    from_statuses: tuple[ItemStatus, ...],
    to: ItemStatus,
    **values: Any,
) -> bool:
    """Move ``item`` to ``to`` only if it is still in one of ``from_statuses``.

    The check and the write are one UPDATE, so of two concurrent deliveries only one wins.
    """
    result = session.execute(
        update(Item)
        .where(
            Item.id == item.id,
            Item.user_id == item.user_id,
            Item.status.in_([str(s) for s in from_statuses]),
        )
        .values(status=str(to), updated_at=func.now(), **values)
        .returning(Item.id)
    )
    moved = result.first() is not None
    if moved:
        session.refresh(item)
    return moved


def fail_item(session: Session, item: Item, *, stage: str, reason: str) -> bool:
    """Mark the item failed with a stage and a reason (unless it is already ready or failed)."""
    return transition(
        session,
        item,
        from_statuses=(
            ItemStatus.UPLOADING,
            ItemStatus.PROCESSING,
            ItemStatus.ANALYZING,
            ItemStatus.INDEXING,
        ),
        to=ItemStatus.FAILED,
        failure_stage=stage,
        failure_reason=reason[:MAX_REASON_LENGTH],
    )


def find_duplicate(
    session: Session, user_id: str, sha256: str, *, other_than: uuid.UUID | None = None
) -> Item | None:
    """The caller's earliest item (not failed) whose original has these bytes, if any.

    Only ever within one tenant: the same bytes uploaded by two users are two items.
    """
    query = select(Item).where(
        Item.user_id == user_id,
        Item.sha256 == sha256,
        Item.status != str(ItemStatus.FAILED),
    )
    if other_than is not None:
        query = query.where(Item.id != other_than)
    return session.scalars(query.order_by(Item.created_at, Item.id).limit(1)).one_or_none()


def lock_content(session: Session, user_id: str, sha256: str) -> None:
    """Serialise, until the transaction ends, whoever decides about these bytes for this user."""
    session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"{user_id}:{sha256}", 0)))
    )


def latest_analysis(session: Session, item: Item) -> Analysis | None:
    return session.scalars(
        select(Analysis)
        .where(Analysis.item_id == item.id, Analysis.user_id == item.user_id)
        .order_by(Analysis.version.desc())
        .limit(1)
    ).one_or_none()


def analysis_for_generation(session: Session, item: Item, generation: int) -> Analysis | None:
    return session.scalars(
        select(Analysis).where(
            Analysis.item_id == item.id,
            Analysis.user_id == item.user_id,
            Analysis.generation == generation,
        )
    ).one_or_none()


def next_analysis_version(session: Session, item: Item) -> int:
    current = session.scalar(select(func.max(Analysis.version)).where(Analysis.item_id == item.id))
    return (current or 0) + 1
