"""Search the caller's items: keyword, semantic or hybrid (``runtime.domain.search``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from runtime.api.context import ApiContext, api_context
from runtime.api.deps import CurrentUser
from runtime.api.errors import ApiError, responses
from runtime.api.schemas import PRINTABLE, Rfc3339DateTime, SearchResponse, SearchResult
from runtime.api.urls import presigned_get
from runtime.domain.cursors import InvalidCursor
from runtime.domain.vocabulary import MAX_LIMIT, ItemStatus, SearchMode

router = APIRouter(tags=["search"])
Ctx = Annotated[ApiContext, Depends(api_context)]


@router.get(
    "/search",
    operation_id="search",
    summary="Find the caller's items by keyword, by meaning, or both",
    description=(
        '`keyword` reads the query with web-search syntax (`"a phrase"`, `-exclude`, `or`); '
        "`semantic` compares meanings (embeddings); `hybrid` (default) fuses both rankings. "
        "Only results at or above the mode's relevance threshold are returned, so a query "
        "about something absent gives an empty list. See `SearchResult.score` for the scales."
    ),
    responses={**responses(400, 401, 422, 429, 500, 503)},
)
def search_items(
    user: CurrentUser,
    ctx: Ctx,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="What to look for")],
    mode: SearchMode = SearchMode.HYBRID,
    category: Annotated[
        str | None,
        Query(min_length=1, max_length=128, pattern=PRINTABLE, description="Exact, any case"),
    ] = None,
    status: Annotated[ItemStatus | None, Query(description="Only items in this status")] = None,
    created_from: Annotated[
        Rfc3339DateTime | None, Query(description="Created at or after (RFC 3339)")
    ] = None,
    created_to: Annotated[
        Rfc3339DateTime | None, Query(description="Created before (RFC 3339)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    cursor: Annotated[
        str | None,
        Query(description="`next_cursor` of the previous page of this search (else a 400)"),
    ] = None,
) -> SearchResponse:
    # The ORM and the search queries load with the first search, not with the app.
    from runtime.db.session import session_scope
    from runtime.domain.search import SearchFilters, search
    from runtime.providers.factory import get_reranker

    pipeline = ctx.pipeline()
    filters = SearchFilters(
        category=category,
        created_from=created_from,
        created_to=created_to,
        status=str(status) if status else None,
    )
    try:
        with session_scope() as session:
            page = search(
                session,
                pipeline.embedder(),
                user_id=user.user_id,
                query=q,
                mode=mode,
                filters=filters,
                limit=limit,
                cursor=cursor,
                reranker=get_reranker(ctx.settings),
            )
    except InvalidCursor:
        raise ApiError(
            400, "invalid_cursor", "The cursor does not belong to this search."
        ) from None
    s3, bucket = ctx.s3(), pipeline.store.bucket
    return SearchResponse(
        query=q,
        mode=page.mode,
        results=[
            SearchResult(
                item_id=hit.item_id,
                score=hit.score,
                headline=hit.headline,
                category=hit.category,
                summary=hit.summary,
                status=ItemStatus(hit.status),
                file_name=hit.file_name,
                created_at=hit.created_at,
                thumbnail_url=(
                    presigned_get(s3, bucket=bucket, key=hit.thumbnail_key)
                    if hit.thumbnail_key
                    else None
                ),
            )
            for hit in page.hits
        ],
        next_cursor=page.next_cursor,
    )
