"""Public operational endpoints: health (database reachable, schema current) and version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from runtime.api.context import ApiContext, api_context
from runtime.api.errors import ApiError, responses
from runtime.api.logs import logger
from runtime.api.schemas import Health, VersionInfo

router = APIRouter(tags=["operations"])
Ctx = Annotated[ApiContext, Depends(api_context)]


@router.get(
    "/health",
    operation_id="health",
    summary="200 when the database is reachable and its schema is current, else 503",
    responses=responses(429, 500, 503),
)
def health() -> Health:
    from sqlalchemy import text

    from runtime.db.migrate import is_current
    from runtime.db.session import get_engine

    try:
        engine = get_engine()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = is_current(engine)
    except Exception as error:
        logger.warning("health: database unreachable", extra={"error": type(error).__name__})
        raise ApiError(503, "database_unreachable", "The database is not reachable.") from None
    if not current:
        raise ApiError(
            503, "migrations_pending", "The database schema is not at this release's version."
        )
    return Health(status="ok", database="reachable", migrations="current")


@router.get(
    "/version",
    operation_id="version",
    summary="The build this API runs: git commit and build time (`dev` locally)",
    responses=responses(429, 500),
)
def version(ctx: Ctx) -> VersionInfo:
    return VersionInfo(git_sha=ctx.settings.git_sha, build_time=ctx.settings.build_time)
