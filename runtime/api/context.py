"""What the app holds for its lifetime (one per process / Lambda container), created lazily.

The app's own behaviour (sign-in configuration, limits, CORS, version) comes from the ``Settings``
given to ``create_app``. Its collaborators — database sessions, the S3 store, the event
publisher, the query embedder — are the process-wide ones the pipeline uses
(``runtime.handlers.wiring.pipeline()``, ``runtime.db.session``), created on first use, so a
request that needs none of them (``/version``, a refused token) never imports boto3 or loads a
model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

if TYPE_CHECKING:
    from runtime.api.auth import CognitoVerifier
    from runtime.api.limits import RateLimiter
    from runtime.config import Settings
    from runtime.domain.pipeline import Pipeline

REQUEST_ID_KEY = "collections.request_id"
USER_ID_KEY = "collections.user_id"


def request_id_of(scope: dict[str, Any] | None) -> str | None:
    return scope.get(REQUEST_ID_KEY) if scope else None


@dataclass
class ApiContext:
    settings: Settings
    behind_gateway: bool = False
    user_limiter: RateLimiter | None = None
    _verifier: CognitoVerifier | None = None
    _presigner: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def verifier(self) -> CognitoVerifier:
        """The token verifier (its JWKS is fetched on the first token, then cached)."""
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    from runtime.api.auth import build_verifier

                    self._verifier = build_verifier(self.settings)
        return self._verifier

    def pipeline(self) -> Pipeline:
        from runtime.handlers.wiring import pipeline

        return pipeline()

    def s3(self) -> Any:
        """An S3 client for presigning, created once per process.

        Not the blob store's client: presigned POSTs must be SigV4 (boto3 still signs them with
        SigV2 in us-east-1 by default, which S3 refuses for buckets created since 2020), and
        their URL must be the bucket's regional virtual-hosted endpoint on AWS (the global one
        answers a browser's POST with a redirect). Path style on a local emulator endpoint.
        """
        if self._presigner is None:
            with self._lock:
                if self._presigner is None:
                    self._presigner = _presigning_client()
        return self._presigner


def _presigning_client() -> Any:
    import boto3
    from botocore.config import Config

    from runtime.adapters.aws import client_kwargs

    kwargs = client_kwargs()
    style = "path" if kwargs.get("endpoint_url") else "virtual"
    config = Config(signature_version="s3v4", s3={"addressing_style": style})
    return boto3.client("s3", config=config, **kwargs)


def api_context(request: Request) -> ApiContext:
    return request.app.state.collections
