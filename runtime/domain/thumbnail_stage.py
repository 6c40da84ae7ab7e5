"""Stage 1: an original landed in S3 -> renditions, dimensions, and ImageProcessed.

Stored facts describe stored bytes: the item records the ETag of the bytes it processed, and an
"Object Created" event for an item whose original now has another ETag (a presigned POST used
again: S3 accepts it until the form expires) starts a new generation from the new object: new
renditions, size, sha256, dimensions, analysis and search document. A late event for bytes that
were already processed (or replaced) changes nothing.
"""

from __future__ import annotations

import hashlib

from runtime.db.models import Item, ItemStatus
from runtime.domain.errors import PermanentError
from runtime.domain.images import BadImage, process_image
from runtime.domain.items import (
    analysis_for_generation,
    find_duplicate,
    get_item,
    lock_content,
    transition,
)
from runtime.domain.pipeline import Outcome, Pipeline, fail_and_announce
from runtime.events import ImageProcessed, OriginalKey, derived_key

STAGE = "thumbnail"
_EXTENSIONS = {"image/webp": "webp", "image/jpeg": "jpg", "image/png": "png"}


def image_processed_event(item: Item) -> ImageProcessed:
    return ImageProcessed(
        item_id=item.id,
        user_id=item.user_id,
        generation=item.generation,
        analysis_key=item.derived_keys["analysis"],
        width=item.width or 0,
        height=item.height or 0,
        content_type=item.content_type or "",
    )


def process_upload(pipeline: Pipeline, *, key: str, size: int | None, etag: str | None) -> Outcome:
    parsed = OriginalKey.parse(key)
    if parsed is None:
        return Outcome("skipped", f"not an original's key: {key}")
    item_ref = str(parsed.item_id)

    with pipeline.sessions() as session:
        item = get_item(session, parsed.user_id, parsed.item_id, lock=True)
        if item is None:
            return Outcome(
                "skipped", "no item for this object (deleted, or never created)", item_ref
            )
        replaced = item.status != ItemStatus.UPLOADING and _replaced(pipeline, key, item)
        if item.status == ItemStatus.UPLOADING or replaced:
            transition(
                session,
                item,
                from_statuses=(item.status,),
                to=ItemStatus.PROCESSING,
                etag=replaced or etag,
                byte_size=size,
                failure_stage=None,
                failure_reason=None,
                warnings=[],
            )
        elif (
            item.status == ItemStatus.ANALYZING
            and "analysis" in item.derived_keys
            and (analysis_for_generation(session, item, item.generation) is None)
        ):
            # A redelivery after the transition committed but before the event went out.
            event = image_processed_event(item)
            pipeline.publisher.publish(event)
            return Outcome("re-emitted", "ImageProcessed published again", item_ref)
        elif item.status != ItemStatus.PROCESSING:
            return Outcome("skipped", f"item is already {item.status}", item_ref)

    if size is not None and size > pipeline.settings.max_upload_bytes:
        return _fail(pipeline, parsed, "file_too_large", f"{size} bytes")
    try:
        data, stored_etag = pipeline.store.read(key)
        processed = process_image(
            data,
            thumbnail_sizes=pipeline.settings.thumbnail_sizes,
            analysis_max_edge=pipeline.settings.analysis_max_edge,
            max_pixels=pipeline.settings.max_image_pixels,
        )
    except (BadImage, PermanentError) as error:
        return _fail(pipeline, parsed, error.reason, error.detail)

    derived: dict[str, str] = {}
    for rendition in processed.renditions:
        extension = _EXTENSIONS.get(rendition.content_type, "bin")
        rendition_key = derived_key(parsed.user_id, parsed.item_id, rendition.name, extension)
        pipeline.store.put(rendition_key, rendition.data, rendition.content_type)
        derived[rendition.name] = rendition_key

    digest = hashlib.sha256(data).hexdigest()
    with pipeline.sessions() as session:
        lock_content(session, parsed.user_id, digest)
        item = get_item(session, parsed.user_id, parsed.item_id, lock=True)
        if item is None:
            return Outcome("skipped", "item deleted while processing", item_ref)
        earlier = find_duplicate(session, parsed.user_id, digest, other_than=item.id)
        # The same bytes already in this user's collection (an upload that did not declare its
        # sha256, or raced another): this item fails below and names the one to use.
        moved = earlier is None and transition(
            session,
            item,
            from_statuses=(ItemStatus.PROCESSING,),
            to=ItemStatus.ANALYZING,
            width=processed.width,
            height=processed.height,
            content_type=processed.content_type,
            sha256=digest,
            byte_size=len(data),
            etag=stored_etag,
            derived_keys=derived,
            warnings=[{"code": w.code, "detail": w.detail} for w in processed.warnings],
            generation=item.generation + 1,
        )
        if earlier is None and not moved:
            return Outcome("skipped", f"item moved to {item.status} meanwhile", item_ref)
        event = image_processed_event(item) if moved else None
    if event is None:
        assert earlier is not None
        pipeline.store.delete(list(derived.values()))
        return _fail(pipeline, parsed, "duplicate_item", f"the same image is item {earlier.id}")
    pipeline.publisher.publish(event)
    return Outcome("done", f"{len(derived)} renditions", item_ref)


def _replaced(pipeline: Pipeline, key: str, item: Item) -> str | None:
    """The ETag of the item's original if it is not the object the item was made from."""
    if item.etag is None or item.status == ItemStatus.PROCESSING:
        return None
    current = pipeline.store.etag(key)
    return current if current is not None and current != item.etag else None


def _fail(pipeline: Pipeline, ref: OriginalKey, reason: str, detail: str) -> Outcome:
    return fail_and_announce(
        pipeline, ref.user_id, ref.item_id, stage=STAGE, reason=reason, detail=detail
    )
