"""Helpers for the API tests: crafted tokens, API Gateway events, uploads through the API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from functools import cache
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.corpus import sample_jpeg


@cache
def emulator_signing_key() -> Any:
    """The emulator's own Cognito signing key (kid "dummy"): tokens signed with it verify like
    real ones, so each bad-token case fails for exactly the reason it is about."""
    from moto.utilities.utils import load_resource

    return jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), "RS256").key


@cache
def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims_for(
    issuer: str, client_id: str, subject: str, *, token_use: str = "id", **overrides: Any
) -> dict[str, Any]:
    """Cognito-shaped claims; an override of None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "token_use": token_use,
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
        "jti": str(uuid.uuid4()),
    }
    if token_use == "id":
        claims["aud"] = client_id
    else:
        claims["client_id"] = client_id
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], *, key: Any = None, kid: str | None = "dummy") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, key or emulator_signing_key(), algorithm="RS256", headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A token with any header, e.g. ``alg: none``, and an empty signature."""
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), ""])


def hs256_with_public_key(claims: dict[str, Any], public_pem: bytes) -> str:
    """The classic algorithm-confusion token: HMAC-SHA256 keyed with the RSA public key."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "dummy"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body
    assert error.get("request_id") == response.headers["x-request-id"], body
    if code is not None:
        assert error["code"] == code, body
    return error


def upload_through_api(
    http: httpx.Client, headers: dict[str, str], *, seed: int = 0, name: str = "photo.jpg"
) -> dict:
    data = sample_jpeg(800, 600, seed=seed)
    response = http.post(
        "/items/upload", headers=headers, files={"file": (name, data, "image/jpeg")}
    )
    assert response.status_code == 201, response.text
    return response.json()


def http_api_event(
    method: str,
    path: str,
    *,
    token: str | None = None,
    claims: dict[str, Any] | None = None,
    query: str = "",
    body: bytes | None = None,
    content_type: str | None = None,
    request_id: str = "Ab1CdEfGhIjKlMn=",
    route_key: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, as a JWT-authorized route gets it."""
    headers = {
        "accept": "application/json",
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "pytest",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["content-type"] = content_type
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "pytest",
            },
            "requestId": request_id,
            "routeKey": route_key or f"{method} {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(
            part.split("=", 1) for part in query.split("&") if "=" in part
        )
    if claims is not None:
        # The JWT authorizer passes every claim on as a string.
        event["requestContext"]["authorizer"] = {
            "jwt": {"claims": {k: str(v) for k, v in claims.items()}, "scopes": None}
        }
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event
