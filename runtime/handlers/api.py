"""Lambda: API Gateway HTTP API (payload format 2.0) -> the FastAPI app, through Mangum.

Importing this module loads nothing but the standard library: the app (FastAPI, pydantic,
SQLAlchemy) is built on the first invocation and reused for the container's life; the database
engine, boto3 clients, the JWKS and the query embedder are created later still, by the first
request that needs each. So ``/version`` or a refused token never imports boto3 or a model SDK.
"""

from __future__ import annotations

import threading
from typing import Any

_adapter: Any = None
_lock = threading.Lock()


def _build() -> Any:
    from mangum import Mangum

    from runtime.api.app import create_app

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
