"""The web app's two public routes: the page at ``/`` (any query string: the app's own routes
are ``/?q=…``, ``/?item=…``, ``/?ask=…``) and its fingerprinted assets under
``/assets/<version>/``."""

from __future__ import annotations

import html
import json
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response

from runtime.api.context import ApiContext, api_context
from runtime.api.errors import ApiError
from runtime.api.security import page_csp

router = APIRouter(include_in_schema=False)
Ctx = Annotated[ApiContext, Depends(api_context)]

ASSETS_PATH = "/assets"
IMMUTABLE = "public, max-age=31536000, immutable"


def storage_origin(ctx: ApiContext) -> str:
    """Where the browser sends uploads and loads images from: the origin of the presigned URLs
    (the bucket's regional endpoint on AWS, the emulator locally)."""
    from runtime.api.urls import presigned_get

    url = presigned_get(ctx.s3(), bucket=ctx.pipeline().store.bucket, key="users/")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(storage: str) -> str:
    """The page runs only its own scripts and styles (no inline code); it talks to the API and
    the bucket only, and shows images from the bucket only."""
    return page_csp(img_src=[storage], connect_src=[storage])


def page_config(ctx: ApiContext) -> dict[str, str | None]:
    settings = ctx.settings
    return {
        "signInHint": settings.web_sign_in_hint,
        "username": settings.web_demo_username,
        "version": settings.git_sha,
    }


@router.get("/")
def index(request: Request, ctx: Ctx) -> Response:
    from runtime.web import assets

    root = request.scope.get("root_path", "")
    config = html.escape(json.dumps(page_config(ctx)), quote=True)
    body = assets().index(f"{root}{ASSETS_PATH}", config)
    return Response(
        body,
        media_type="text/html; charset=utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": content_security_policy(storage_origin(ctx)),
        },
    )


@router.get(ASSETS_PATH + "/{version}/{name:path}")
def asset(version: str, name: str) -> Response:
    from runtime.web import assets

    current = assets()
    found = current.files.get(name) if version == current.version else None
    if found is None:
        # An old version's URL too: its bytes are gone, and serving today's under it would
        # break the promise that a versioned URL never changes.
        raise ApiError(404, "not_found", "No such asset.")
    return Response(
        found.body,
        media_type=found.media_type,
        headers={"Cache-Control": IMMUTABLE},
    )
