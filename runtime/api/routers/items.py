"""Items: create an upload (presigned POST to S3) or upload through the API, list, get,
re-analyze, list analysis versions, delete. Every query is scoped to the caller's ``sub``; an
item of another user is indistinguishable from one that does not exist (404)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile

from runtime.api.context import ApiContext, api_context
from runtime.api.deps import CurrentUser
from runtime.api.errors import ApiError, responses
from runtime.api.logs import logger
from runtime.api.schemas import (
    PRINTABLE,
    AnalysisList,
    AnalysisVersion,
    CreateUploadRequest,
    CreateUploadResponse,
    Failure,
    ImageContentType,
    ItemDetail,
    ItemPage,
    ItemSummary,
    ItemUrls,
    Rfc3339DateTime,
    UploadForm,
)
from runtime.api.urls import download_expiry, presigned_get, presigned_upload
from runtime.domain import cursors
from runtime.domain.cursors import InvalidCursor
from runtime.domain.vocabulary import ItemStatus
from runtime.events import AnalysisRequested, item_prefix

# The ORM and the item queries are imported by the first request that reaches the database, not
# when the app is built: a cold start that answers /health, the web page or a refused token never
# loads SQLAlchemy.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from runtime.db.models import Analysis, Item

router = APIRouter(prefix="/items", tags=["items"])
Ctx = Annotated[ApiContext, Depends(api_context)]
ItemId = Annotated[uuid.UUID, Path(description="The item's id")]

COMMON = responses(401, 422, 429, 500, 503)
EXTENSIONS = {
    ".jpg": ImageContentType.JPEG,
    ".jpeg": ImageContentType.JPEG,
    ".png": ImageContentType.PNG,
    ".webp": ImageContentType.WEBP,
    ".gif": ImageContentType.GIF,
    ".heic": ImageContentType.HEIC,
    ".heif": ImageContentType.HEIF,
}
MAX_PAGE = 100


def not_found() -> ApiError:
    return ApiError(404, "item_not_found", "There is no such item.")


def _refuse_duplicate(session: Session, user_id: str, sha256: str) -> None:
    """409 ``duplicate_item`` naming the caller's item that already has these bytes."""
    from runtime.domain.items import find_duplicate, lock_content

    lock_content(session, user_id, sha256)
    existing = find_duplicate(session, user_id, sha256)
    if existing is not None:
        raise ApiError(
            409,
            "duplicate_item",
            "This image is already in your collection.",
            item_id=str(existing.id),
        )


def _bucket(ctx: ApiContext) -> str:
    return ctx.pipeline().store.bucket


def _small_thumbnail(derived_keys: dict[str, str]) -> str | None:
    thumbs = [(name, key) for name, key in derived_keys.items() if name.startswith("thumb_")]
    if not thumbs:
        return None

    def size(name: str) -> int:
        digits = name.removeprefix("thumb_")
        return int(digits) if digits.isdigit() else 1 << 30

    return min(thumbs, key=lambda nk: size(nk[0]))[1]


def _summary(
    ctx: ApiContext, item: Item, category: str | None, headline: str | None
) -> dict[str, Any]:
    thumbnail = _small_thumbnail(item.derived_keys or {})
    failure = None
    if item.status == ItemStatus.FAILED:
        failure = Failure(stage=item.failure_stage, reason=item.failure_reason)
    return {
        "id": item.id,
        "status": ItemStatus(item.status),
        "file_name": item.file_name,
        "content_type": item.content_type or item.declared_content_type,
        "size": item.byte_size,
        "width": item.width,
        "height": item.height,
        "category": category,
        "headline": headline,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "ready_at": item.ready_at,
        "failure": failure,
        "warnings": item.warnings or [],
        "thumbnail_url": (
            presigned_get(ctx.s3(), bucket=_bucket(ctx), key=thumbnail) if thumbnail else None
        ),
    }


def _text(result: dict[str, Any] | None, name: str) -> str | None:
    value = (result or {}).get(name)
    return value if isinstance(value, str) and value else None


def _analysis(analysis: Analysis) -> AnalysisVersion:
    return AnalysisVersion(
        version=analysis.version,
        generation=analysis.generation,
        provider=analysis.provider,
        model=analysis.model,
        input_tokens=analysis.input_tokens,
        cache_creation_input_tokens=analysis.cache_creation_input_tokens,
        cache_read_input_tokens=analysis.cache_read_input_tokens,
        output_tokens=analysis.output_tokens,
        latency_ms=analysis.latency_ms,
        created_at=analysis.created_at,
        result=analysis.result,
    )


def _owned(session: Session, user_id: str, item_id: uuid.UUID, *, lock: bool = False) -> Item:
    from runtime.domain.items import get_item

    item = get_item(session, user_id, item_id, lock=lock)
    if item is None:
        raise not_found()
    return item


# -- cursor pagination --------------------------------------------------------------------------


def _listing_tag(
    user_id: str,
    status: ItemStatus | None,
    category: str | None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> str:
    return cursors.subject_tag(
        "items",
        user_id,
        status,
        category.lower() if category else None,
        created_from.isoformat() if created_from else None,
        created_to.isoformat() if created_to else None,
    )


def _encode_cursor(item: Item, listing: str) -> str:
    return cursors.seal({"l": listing, "t": item.created_at.isoformat(), "i": str(item.id)})


def _decode_cursor(cursor: str, listing: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor of this listing names (same user and filters); 400 otherwise."""
    try:
        data = cursors.unseal(cursor)
        if data.get("l") != listing:
            raise InvalidCursor("cursor of another listing")
        stamp, item_id = data.get("t"), data.get("i")
        if not isinstance(stamp, str) or not isinstance(item_id, str) or len(stamp) > 40:
            raise InvalidCursor("malformed cursor position")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise InvalidCursor("naive timestamp")
        return created_at, uuid.UUID(item_id)
    except (InvalidCursor, ValueError):
        raise ApiError(
            400, "invalid_cursor", "The cursor is not one this listing issued."
        ) from None


# -- routes ---------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    operation_id="createUpload",
    summary="Create an item and a presigned POST to upload its image straight to S3",
    responses={**COMMON, **responses(409, 413)},
)
def create_upload(body: CreateUploadRequest, user: CurrentUser, ctx: Ctx) -> CreateUploadResponse:
    limit = ctx.settings.max_upload_bytes
    if body.size > limit:
        raise ApiError(
            413, "upload_too_large", f"The file is larger than the upload limit of {limit} bytes."
        )
    from runtime.db.session import session_scope
    from runtime.domain.items import create_item

    content_type = str(body.content_type)
    with session_scope() as session:
        if body.sha256:
            _refuse_duplicate(session, user.user_id, body.sha256)
        item = create_item(
            session,
            user_id=user.user_id,
            file_name=body.file_name,
            content_type=content_type,
            byte_size=body.size,
            sha256=body.sha256,
        )
        post = presigned_upload(
            ctx.s3(),
            bucket=_bucket(ctx),
            key=item.original_key,
            content_type=content_type,
            max_bytes=limit,
        )
    return CreateUploadResponse(
        item=ItemSummary(**_summary(ctx, item, None, None)),
        upload=UploadForm(**post, content_type=body.content_type, max_size=limit),
    )


def _clean_file_name(name: str | None) -> str | None:
    if not name:
        return None
    name = PurePosixPath(name.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip()
    return name[:255] or None


def _upload_type(file: UploadFile, file_name: str | None) -> ImageContentType:
    declared = (file.content_type or "").split(";")[0].strip().lower()
    if declared in set(ImageContentType):
        return ImageContentType(declared)
    if declared in ("", "application/octet-stream") and file_name:
        by_extension = EXTENSIONS.get(PurePosixPath(file_name.lower()).suffix)
        if by_extension:
            return by_extension
    raise ApiError(
        415,
        "unsupported_media_type",
        "Upload a JPEG, PNG, WebP, GIF or HEIC/HEIF image.",
    )


@router.post(
    "/upload",
    status_code=201,
    operation_id="uploadItem",
    summary="Upload a small image through the API (multipart/form-data, e.g. curl -F)",
    description=(
        "For small files and scripts: `curl -H 'Authorization: Bearer …' "
        "-F file=@photo.jpg <api>/items/upload`. The API stores the image at the item's key; "
        "processing starts from the storage event, as for a presigned upload. Files above the "
        "direct-upload limit (4 MiB by default) must use `POST /items`."
    ),
    responses={**COMMON, **responses(409, 413, 415)},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "encoding": {
                        "file": {"contentType": ", ".join(t.value for t in ImageContentType)}
                    }
                }
            }
        }
    },
)
def upload_item(
    user: CurrentUser,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="The image")],
    file_name: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=255,
            pattern=PRINTABLE,
            description="Name to keep (default: the part's filename)",
        ),
    ] = None,
) -> ItemSummary:
    name = _clean_file_name(file_name) or _clean_file_name(file.filename)
    content_type = _upload_type(file, name)
    limit = min(ctx.settings.max_upload_bytes, ctx.settings.api_direct_upload_max_bytes)
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413,
            "upload_too_large",
            f"Files above {limit} bytes must be uploaded with POST /items (presigned).",
        )
    if not data:
        raise ApiError(422, "empty_file", "The file is empty.")
    from sqlalchemy import delete

    from runtime.db.models import Item
    from runtime.db.session import session_scope
    from runtime.domain.items import create_item

    with session_scope() as session:
        digest = hashlib.sha256(data).hexdigest()
        _refuse_duplicate(session, user.user_id, digest)
        item = create_item(
            session,
            user_id=user.user_id,
            file_name=name,
            content_type=str(content_type),
            byte_size=len(data),
            sha256=digest,
        )
    try:
        ctx.pipeline().store.put(item.original_key, data, str(content_type))
    except Exception:
        with session_scope() as session:
            session.execute(delete(Item).where(Item.id == item.id, Item.user_id == user.user_id))
        raise
    return ItemSummary(**_summary(ctx, item, None, None))


@router.get(
    "",
    operation_id="listItems",
    summary="List the caller's items, newest first",
    responses={**COMMON, **responses(400)},
)
def list_items(
    user: CurrentUser,
    ctx: Ctx,
    status: Annotated[ItemStatus | None, Query(description="Only items in this status")] = None,
    category: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=PRINTABLE,
            description="Only items whose latest analysis has this category (any case)",
        ),
    ] = None,
    created_from: Annotated[
        Rfc3339DateTime | None, Query(description="Created at or after (RFC 3339)")
    ] = None,
    created_to: Annotated[
        Rfc3339DateTime | None, Query(description="Created before (RFC 3339)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page (any other value is a 400)",
        ),
    ] = None,
) -> ItemPage:
    from sqlalchemy import and_, func, or_, select, true

    from runtime.db.models import Analysis, Item
    from runtime.db.session import session_scope

    latest = (
        select(
            Analysis.result["category"].astext.label("category"),
            Analysis.result["headline"].astext.label("headline"),
        )
        .where(Analysis.item_id == Item.id, Analysis.user_id == Item.user_id)
        .order_by(Analysis.version.desc())
        .limit(1)
        .lateral("latest")
    )
    query = (
        select(Item, latest.c.category, latest.c.headline)
        .outerjoin(latest, true())
        .where(Item.user_id == user.user_id)
    )
    if status is not None:
        query = query.where(Item.status == str(status))
    if category is not None:
        query = query.where(func.lower(latest.c.category) == func.lower(category))
    if created_from is not None:
        query = query.where(Item.created_at >= created_from)
    if created_to is not None:
        query = query.where(Item.created_at < created_to)
    listing = _listing_tag(user.user_id, status, category, created_from, created_to)
    if cursor:
        created_at, item_id = _decode_cursor(cursor, listing)
        query = query.where(
            or_(
                Item.created_at < created_at,
                and_(Item.created_at == created_at, Item.id < item_id),
            )
        )
    query = query.order_by(Item.created_at.desc(), Item.id.desc()).limit(limit + 1)
    with session_scope() as session:
        rows = session.execute(query).all()
    page = rows[:limit]
    return ItemPage(
        items=[ItemSummary(**_summary(ctx, row[0], row[1], row[2])) for row in page],
        next_cursor=_encode_cursor(page[-1][0], listing) if len(rows) > limit else None,
    )


@router.get(
    "/{item_id:uuid}",
    operation_id="getItem",
    summary="One item: status, failure, latest analysis, presigned URLs",
    responses={**COMMON, **responses(404)},
)
def read_item(item_id: ItemId, user: CurrentUser, ctx: Ctx) -> ItemDetail:
    from runtime.db.session import session_scope
    from runtime.domain.items import latest_analysis

    with session_scope() as session:
        item = _owned(session, user.user_id, item_id)
        analysis = latest_analysis(session, item)
    s3, bucket = ctx.s3(), _bucket(ctx)
    thumbnails = {
        name: presigned_get(s3, bucket=bucket, key=key)
        for name, key in sorted((item.derived_keys or {}).items())
        if name.startswith("thumb_")
    }
    original = download = None
    if item.status != ItemStatus.UPLOADING:
        original = presigned_get(s3, bucket=bucket, key=item.original_key)
        download = presigned_get(
            s3, bucket=bucket, key=item.original_key, attachment=item.file_name or "original"
        )
    result = analysis.result if analysis else None
    return ItemDetail(
        **_summary(ctx, item, _text(result, "category"), _text(result, "headline")),
        generation=item.generation,
        analysis=_analysis(analysis) if analysis else None,
        urls=ItemUrls(
            original=original,
            download=download,
            thumbnails=thumbnails,
            expires_at=download_expiry(),
        ),
    )


@router.post(
    "/{item_id:uuid}/reanalyze",
    status_code=202,
    operation_id="reanalyzeItem",
    summary=(
        "Analyze the item again (a new analysis version), or retry a failed item: from its "
        "analysis-size image, or from the original when thumbnailing gave up"
    ),
    responses={**COMMON, **responses(404, 409)},
)
def reanalyze_item(item_id: ItemId, user: CurrentUser, ctx: Ctx) -> ItemSummary:
    from runtime.db.models import Item
    from runtime.db.session import session_scope
    from runtime.domain.items import latest_analysis, transition

    with session_scope() as session:
        item = _owned(session, user.user_id, item_id, lock=True)
        if _reprocessable(item):
            return _reprocess(ctx, session, item)
        can = item.status == ItemStatus.READY or (
            item.status == ItemStatus.FAILED and "analysis" in (item.derived_keys or {})
        )
        moved = can and transition(
            session,
            item,
            from_statuses=(ItemStatus.READY, ItemStatus.FAILED),
            to=ItemStatus.ANALYZING,
            generation=Item.generation + 1,
            failure_stage=None,
            failure_reason=None,
        )
        if not moved:
            raise ApiError(
                409,
                "not_reanalyzable",
                f"The item is {item.status}; only a ready item, one whose analysis failed, or "
                "one whose thumbnailing gave up on a transient error can be retried.",
            )
        # Published before the commit: if it fails, the item stays as it was. If the commit
        # failed after it, the analyze stage skips the event (the item is not analyzing).
        ctx.pipeline().publisher.publish(
            AnalysisRequested(item_id=item.id, user_id=item.user_id, generation=item.generation)
        )
        analysis = latest_analysis(session, item)
    result = analysis.result if analysis else None
    return ItemSummary(**_summary(ctx, item, _text(result, "category"), _text(result, "headline")))


# Failures of the thumbnail stage that another try may not repeat (unlike a bad file).
_RETRYABLE_THUMBNAIL_FAILURES = ("retries_exhausted", "stalled")


def _reprocessable(item: Item) -> bool:
    return (
        item.status == ItemStatus.FAILED
        and item.failure_stage == "thumbnail"
        and (item.failure_reason or "").startswith(_RETRYABLE_THUMBNAIL_FAILURES)
    )


def _reprocess(ctx: ApiContext, session: Session, item: Item) -> ItemSummary:
    """Start again from the stored original: S3 announces a copy of the object onto itself
    ("Object Created"), which the thumbnail stage takes up as for a fresh upload."""
    from runtime.domain.items import transition

    stage, reason = item.failure_stage, item.failure_reason
    transition(
        session,
        item,
        from_statuses=(ItemStatus.FAILED,),
        to=ItemStatus.PROCESSING,
        failure_stage=None,
        failure_reason=None,
    )
    session.commit()  # before the event can reach the thumbnail stage
    try:
        ctx.s3().copy_object(
            Bucket=_bucket(ctx),
            Key=item.original_key,
            CopySource={"Bucket": _bucket(ctx), "Key": item.original_key},
            MetadataDirective="REPLACE",
            ContentType=item.declared_content_type or "application/octet-stream",
        )
    except Exception:
        transition(
            session,
            item,
            from_statuses=(ItemStatus.PROCESSING,),
            to=ItemStatus.FAILED,
            failure_stage=stage,
            failure_reason=reason,
        )
        session.commit()
        raise
    return ItemSummary(**_summary(ctx, item, None, None))


@router.get(
    "/{item_id:uuid}/analyses",
    operation_id="listAnalyses",
    summary="Every analysis version of the item, newest first",
    responses={**COMMON, **responses(404)},
)
def list_analyses(item_id: ItemId, user: CurrentUser) -> AnalysisList:
    from sqlalchemy import select

    from runtime.db.models import Analysis
    from runtime.db.session import session_scope

    with session_scope() as session:
        item = _owned(session, user.user_id, item_id)
        analyses = session.scalars(
            select(Analysis)
            .where(Analysis.item_id == item.id, Analysis.user_id == user.user_id)
            .order_by(Analysis.version.desc())
        ).all()
        return AnalysisList(item_id=item.id, analyses=[_analysis(a) for a in analyses])


@router.delete(
    "/{item_id:uuid}",
    status_code=204,
    response_class=Response,
    operation_id="deleteItem",
    summary="Delete the item, its analyses, its search document and all its stored objects",
    responses={204: {"description": "Deleted"}, **COMMON, **responses(404)},
)
def delete_item(item_id: ItemId, user: CurrentUser, ctx: Ctx) -> Response:
    from sqlalchemy import delete

    from runtime.db.models import Item
    from runtime.db.session import session_scope

    store = ctx.pipeline().store
    prefix = item_prefix(user.user_id, item_id)
    with session_scope() as session:
        _owned(session, user.user_id, item_id, lock=True)
        # Objects first, under the row lock: if S3 fails, nothing is deleted and a retry works.
        store.delete([obj.key for obj in store.list(prefix)])
        # The row's analyses and search document go with it (ON DELETE CASCADE).
        session.execute(delete(Item).where(Item.id == item_id, Item.user_id == user.user_id))
    try:
        # A stage that was running may have written a derivative meanwhile; the housekeeping
        # job removes any that this sweep misses (objects no item references).
        store.delete([obj.key for obj in store.list(prefix)])
    except Exception:
        logger.warning("post-delete sweep failed", extra={"item_id": str(item_id)})
    return Response(status_code=204)
