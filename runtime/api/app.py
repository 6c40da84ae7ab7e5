"""The app factory. The same app runs under uvicorn locally and behind API Gateway on Lambda
(``runtime.handlers.api``); only ``behind_gateway`` differs (no in-process rate limit there)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from runtime.api.context import ApiContext
from runtime.api.errors import install_dependency_error_handlers, install_error_handlers
from runtime.api.limits import RateLimiter
from runtime.api.middleware import REQUEST_ID_HEADER, RequestEnvelope
from runtime.api.routers import conversations, items, ops, search, session, web
from runtime.api.security import CSP_HEADER, page_csp, script_hash
from runtime.config import Settings, get_settings

API_VERSION = "0.1.0"
JSON_BODY_LIMIT = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024
DIRECT_UPLOAD_PATH = "/items/upload"

DESCRIPTION = """\
Save what you see: upload screenshots and photos, let the service describe them, and find them
again by keyword or by meaning. Every user sees only their own items.

**Sign-in.** Every route except `/health`, `/version`, `/openapi.json`, `/docs`, the web app
(`/`, `/assets/…`) and its session routes (`/auth/…`) needs a Cognito ID or access token of the
service's user pool: `Authorization: Bearer <token>`.

**Uploads.** `POST /items` creates an item and returns a presigned POST: send the file to
`upload.url` with `upload.fields` (S3 accepts only that key, that Content-Type and a size up to
`upload.max_size`). Small files can go through the API instead: `POST /items/upload`
(multipart). Processing then runs on its own: `uploading → processing → analyzing → indexing →
ready` (or `failed`, with a stage and a reason); poll `GET /items/{item_id}`.

**Errors.** Every error has the same body: `{"error": {"code", "message", "request_id"}}`; the
request id is also in the `x-request-id` header of every response.
"""

TAGS = [
    {"name": "items", "description": "Uploads, listing, details, re-analysis, deletion"},
    {"name": "search", "description": "Keyword, semantic and hybrid search"},
    {
        "name": "assistant",
        "description": "Conversations with the assistant, which answers from your items and "
        "cites them (asynchronous: ask, then poll the message)",
    },
    {"name": "operations", "description": "Health and version (public)"},
    {"name": "session", "description": "The web app's sign-in (public; same-origin only)"},
]


class App(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Starlette builds the stack when the app handles its first request (again if middleware
        # is added later): the handlers whose exception classes need SQLAlchemy and botocore are
        # registered then, so building the app at cold start imports neither.
        install_dependency_error_handlers(self)
        return super().build_middleware_stack()


def create_app(settings: Settings | None = None, *, behind_gateway: bool = False) -> FastAPI:
    """Build the app. Nothing is connected here: the database, AWS clients, the JWKS and the
    query embedder are created on first use and then reused (once per process/container)."""
    settings = settings or get_settings()
    rate = 0 if behind_gateway else settings.api_rate_limit_per_minute
    app = App(
        title="Collections API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # served below from packaged assets: no CDN, works offline
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url="/openapi.json",
        # No "/items/x/" -> "/items/x" redirect: Starlette builds it from the Host header, so it
        # would send a client wherever a forged Host says. A trailing slash is a 404.
        redirect_slashes=False,
    )
    _use_cursor_key(settings)
    app.state.collections = ApiContext(
        settings=settings,
        behind_gateway=behind_gateway,
        user_limiter=RateLimiter(rate) if rate else None,
    )
    install_error_handlers(app)
    _install_docs(app)
    app.include_router(items.router)
    app.include_router(search.router)
    app.include_router(conversations.router)
    app.include_router(ops.router)
    app.include_router(session.router)
    app.include_router(web.router)

    direct_limit = min(settings.max_upload_bytes, settings.api_direct_upload_max_bytes)
    app.add_middleware(
        RequestEnvelope,
        body_limit=JSON_BODY_LIMIT,
        body_limits_by_path={DIRECT_UPLOAD_PATH: direct_limit + MULTIPART_OVERHEAD},
        ip_limiter=RateLimiter(rate) if rate else None,
        trusted_proxies=settings.trusted_proxies,
    )
    if settings.cors_origins:
        # Outermost, so that error responses (413, 429, 500) carry the CORS headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type"],
            expose_headers=[REQUEST_ID_HEADER, "retry-after"],
            max_age=600,
        )
    return app


def _use_cursor_key(settings: Settings) -> None:
    """Page cursors are authenticated with the deployment's secret (read when the first cursor
    is made or checked, then cached like the other secrets)."""
    from runtime.domain import cursors

    param = settings.cursor_key_param
    if not param:
        cursors.use_key(None)
        return

    def read() -> str:
        from runtime.adapters.secrets import get_secret

        value = get_secret(param, "")
        if not value:
            raise RuntimeError(f"the cursor key parameter {param} is empty")
        return value

    cursors.use_key(read)


DOCS_ASSETS_PATH = "/docs/static"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its script and styles from the fastapi-offline wheel."""
    import fastapi_offline
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - docs",
            swagger_js_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
        )
        # Swagger UI starts from one inline script: allowed by its hash, nothing else inline.
        inline = _INLINE_SCRIPT.findall(bytes(page.body).decode())
        page.headers[CSP_HEADER] = page_csp(
            script_hashes=[script_hash(code) for code in inline], style_inline=True
        )
        return page
