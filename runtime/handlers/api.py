"""Lambda: API Gateway HTTP API (payload format 2.0) -> the FastAPI app, through Mangum.

Module load (Lambda's init phase, also what provisioned concurrency and SnapStart pre-run)
imports what every request needs: FastAPI, pydantic, SQLAlchemy's ORM and the app's modules. It
imports no boto3, no model SDK (anthropic, voyageai), no numpy or image library, no Alembic.
The app is built on the first invocation (reading the configuration then) and reused for the
container's life; the database engine, the boto3 clients, the JWKS and the query embedder are
created later still, by the first request that needs each — so ``/version`` or a refused token
never creates any of them.
"""

from __future__ import annotations

import threading
from typing import Any

from mangum import Mangum

from runtime.api.app import create_app

_adapter: Mangum | None = None
_lock = threading.Lock()


def _build() -> Mangum:
    # No lifespan: the app has no startup work. The HTTP API's $default stage adds no path
    # prefix, so the base path is "/".
    return Mangum(create_app(behind_gateway=True), lifespan="off", api_gateway_base_path="/")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _adapter
    if _adapter is None:
        with _lock:
            if _adapter is None:
                _adapter = _build()
    return _adapter(event, context)


def reset() -> None:
    """Forget the app (tests change the configuration between cases)."""
    global _adapter
    with _lock:
        _adapter = None
