"""The Lambda entry point: API Gateway HTTP API events (payload format 2.0, JWT authorizer
claims) through ``runtime.handlers.api.handler`` — Mangum over the same app."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from runtime.local.cloud import LocalCloud, LocalContext
from tests.api.conftest import CognitoPool, User, configure_api
from tests.api.support import http_api_event
from tests.corpus import sample_jpeg

Invoke = Callable[[dict[str, Any]], tuple[int, dict[str, str], Any]]


@pytest.fixture
def invoke(
    env: LocalCloud, cognito: CognitoPool, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Invoke]:
    # A low local rate limit that must not apply behind API Gateway.
    configure_api(monkeypatch, cognito, COLLECTIONS_API_RATE_LIMIT_PER_MINUTE="2")
    from runtime.handlers import api as module

    module.reset()

    def call(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        response = module.handler(event, LocalContext("api", 1024, 29))
        body = response.get("body", "")
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        return response["statusCode"], response.get("headers", {}), json.loads(body or "null")

    yield call
    module.reset()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def authorized(method: str, path: str, user: User, **kwargs: Any) -> dict[str, Any]:
    return http_api_event(
        method, path, token=user.id_token, claims=claims_of(user.id_token), **kwargs
    )


def test_http_api_event_with_authorizer_claims(invoke: Invoke, alice: User) -> None:
    status, headers, body = invoke(
        authorized(
            "POST",
            "/items",
            alice,
            body=json.dumps(
                {"file_name": "a.jpg", "content_type": "image/jpeg", "size": 100}
            ).encode(),
            content_type="application/json",
            request_id="Zx9YwVuTsRqPo0=",
        )
    )
    assert status == 201, body
    assert headers["x-request-id"] == "Zx9YwVuTsRqPo0="  # API Gateway's request id
    item_id = body["item"]["id"]
    assert body["upload"]["fields"]["key"] == f"users/{alice.sub}/items/{item_id}/original"

    status, _, body = invoke(authorized("GET", "/items", alice, query="limit=5"))
    assert status == 200 and [i["id"] for i in body["items"]] == [item_id]
    status, _, body = invoke(
        authorized("GET", f"/items/{item_id}", alice, route_key="GET /items/{item_id}")
    )
    assert status == 200 and body["status"] == "uploading"

    # no in-process rate limit behind API Gateway (it throttles there): 2/min is ignored
    for _ in range(4):
        assert invoke(authorized("GET", "/items", alice))[0] == 200


def test_binary_multipart_upload_through_the_gateway(invoke: Invoke, alice: User) -> None:
    data = sample_jpeg(320, 240)
    boundary = "collections-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="cat.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, item = invoke(
        authorized(
            "POST",
            "/items/upload",
            alice,
            body=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )
    )
    assert status == 201, item
    assert item["size"] == len(data) and item["file_name"] == "cat.jpg"


def test_claims_that_disagree_with_the_token_are_refused(
    invoke: Invoke, alice: User, bob: User
) -> None:
    cases = {
        "another user's claims": claims_of(bob.id_token),
        "another token of the same user": claims_of(alice.access_token),
        "another issuer": {**claims_of(alice.id_token), "iss": "https://issuer.example"},
        "no authorizer claims": None,
    }
    for case, claims in cases.items():
        event = http_api_event("GET", "/items", token=alice.id_token, claims=claims)
        status, headers, body = invoke(event)
        assert status == 401, (case, body)
        assert body["error"]["code"] == "gateway_mismatch", (case, body)
        assert body["error"]["request_id"] == headers["x-request-id"]


def test_a_bad_token_is_refused_even_if_the_claims_look_fine(invoke: Invoke, alice: User) -> None:
    head, payload, _ = alice.id_token.split(".")
    event = http_api_event(
        "GET", "/items", token=f"{head}.{payload}.AAAA", claims=claims_of(alice.id_token)
    )
    status, _, body = invoke(event)
    assert status == 401 and body["error"]["code"] == "invalid_token"


def test_public_routes_through_the_gateway(invoke: Invoke) -> None:
    status, _, body = invoke(http_api_event("GET", "/health"))
    assert status == 200 and body["status"] == "ok"
    status, _, body = invoke(http_api_event("GET", "/version"))
    assert status == 200 and body == {"git_sha": "dev", "build_time": "dev"}
    status, _, body = invoke(http_api_event("GET", "/openapi.json"))
    assert status == 200 and "/items" in body["paths"]


def test_handler_module_and_app_import_nothing_a_request_may_not_need() -> None:
    """Lambda's init (the module, and the app the first invocation builds) loads no ORM, no AWS
    or model SDK, no image library, no Alembic and no event parser: the first request that
    needs one imports it (`benchmarks/cold_start.py` measures the time)."""
    from benchmarks.cold_start import environment

    heavy = [
        "sqlalchemy",
        "boto3",
        "anthropic",
        "voyageai",
        "numpy",
        "PIL",
        "onnxruntime",
        "alembic",
        "aws_lambda_powertools.utilities.parser",
    ]
    code = (
        "import sys, runtime.handlers.api as h; h._build(); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=environment("api"),
    ).stdout
    assert output.strip() == "[]"
