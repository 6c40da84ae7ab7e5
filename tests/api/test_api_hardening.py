"""Attacks a security review made on the HTTP API, each replayed against the real app over HTTP
(served the way `collections dev` serves it): forged cursors, duplicate Authorization headers,
a spoofed X-Forwarded-For, a Host-reflecting redirect, odd time claims, missing security
headers, malformed HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import time
from collections.abc import Callable

from runtime.api.security import SECURITY_HEADERS
from tests.api.conftest import AccessLog, Api, CognitoPool, User
from tests.api.support import assert_error, claims_for, sign, upload_through_api

# The cursor MAC key that used to be a constant of the source: anyone could sign with it.
OLD_CONSTANT_KEY = b"collections.search.cursor.v1"


def forged(data: object, key: bytes = OLD_CONSTANT_KEY) -> str:
    payload = json.dumps(data, separators=(",", ":")).encode()
    token = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{token}.{hashlib.blake2b(payload, key=key, digest_size=16).hexdigest()}"


def search_page(api: Api, user: User, **params: object) -> dict:
    response = api.http.get("/search", params={"q": "photo", **params}, headers=user.headers())
    assert response.status_code == 200, response.text
    return response.json()


def test_forged_and_foreign_cursors_are_each_a_400(api: Api, alice: User, bob: User) -> None:
    for seed in range(3):
        upload_through_api(api.http, alice.headers(), seed=seed)
    listing = api.http.get("/items", params={"limit": 1}, headers=alice.headers()).json()
    items_cursor = listing["next_cursor"]
    assert items_cursor  # a real cursor of alice's listing works
    second = api.http.get(
        "/items", params={"limit": 1, "cursor": items_cursor}, headers=alice.headers()
    )
    assert (
        second.status_code == 200 and second.json()["items"][0]["id"] != (listing["items"][0]["id"])
    )
    token, _, mac = items_cursor.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    edited = dict(payload, t="2999-01-01T00:00:00+00:00")
    search_shape = {"v": 1, "f": "0" * 24, "o": 1}
    cursors = {
        "search, old constant key, k=[1,2,3]": forged({**search_shape, "k": [1, 2, 3]}),
        "search, old constant key, k=[1,2,{}]": forged({**search_shape, "k": [1, 2, {}]}),
        "search, old constant key, 400 digits": forged(
            {**search_shape, "k": [int("9" * 400), 0, "00000000-0000-0000-0000-000000000000"]}
        ),
        "items, unsigned (as before)": base64.urlsafe_b64encode(
            json.dumps({"t": "2999-01-01T00:00:00+00:00", "i": str(payload["i"])}).encode()
        ).decode(),
        "items, edited position, old MAC": forged(edited, key=b"x" * 16).split(".")[0] + "." + mac,
        "items, old constant key": forged(edited),
        "garbage": "%%%.###",
        "many dots": "a.b.c.d",
        "non-ascii": "é.é",
        "empty payload": "." + "0" * 32,
        "json array": forged([1, 2, 3]),
    }
    for name, cursor in cursors.items():
        for path in ("/items", "/search"):
            response = api.http.get(
                path, params={"q": "photo", "cursor": cursor}, headers=alice.headers()
            )
            assert response.status_code == 400, (name, path, response.text)
            assert_error(response, 400, "invalid_cursor")

    # alice's genuine cursor is foreign to bob, and to another filter of alice's own listing
    assert_error(
        api.http.get("/items", params={"cursor": items_cursor}, headers=bob.headers()),
        400,
        "invalid_cursor",
    )
    assert_error(
        api.http.get(
            "/items", params={"cursor": items_cursor, "status": "ready"}, headers=alice.headers()
        ),
        400,
        "invalid_cursor",
    )


def test_duplicate_authorization_headers_are_refused(api: Api, alice: User) -> None:
    good = alice.headers()["Authorization"]
    assert api.http.get("/items", headers={"Authorization": good}).status_code == 200
    for pair in ((good, "Bearer garbage"), ("Bearer garbage", good), (good, good)):
        response = api.http.get("/items", headers=[("Authorization", v) for v in pair])
        assert_error(response, 401, "invalid_authorization_header")
    # the way a gateway joins repeated headers
    joined = api.http.get("/items", headers={"Authorization": f"{good},Bearer garbage"})
    assert_error(joined, 401, "invalid_authorization_header")


def test_spoofed_forwarded_for_neither_bypasses_the_limit_nor_reaches_the_log(
    serve: Callable[..., Api], access_log: AccessLog
) -> None:
    api = serve(COLLECTIONS_API_RATE_LIMIT_PER_MINUTE="3")
    statuses = [
        api.http.get("/version", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(6)
    ]
    assert statuses == [200, 200, 200, 429, 429, 429]
    clients = {r.client_ip for r in access_log.requests(6)}
    assert clients == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_configured_proxy_only(
    serve: Callable[..., Api], access_log: AccessLog
) -> None:
    api = serve(
        COLLECTIONS_API_RATE_LIMIT_PER_MINUTE="3", COLLECTIONS_TRUSTED_PROXIES='["127.0.0.1"]'
    )
    statuses = [
        api.http.get(
            "/version", headers={"X-Forwarded-For": f"203.0.113.9, 198.51.100.{n}"}
        ).status_code
        for n in range(4)
    ]
    assert statuses == [200] * 4  # four clients behind the proxy, one request each
    clients = [r.client_ip for r in access_log.requests(4)]
    # the nearest hop the trusted proxy saw, not what the client claimed further left
    assert clients == [f"198.51.100.{n}" for n in range(4)]


def test_no_redirect_reflects_the_host_header(api: Api, alice: User) -> None:
    item = upload_through_api(api.http, alice.headers())
    for path in (f"/items/{item['id']}/", "/items/", "/search/", "/docs/"):
        response = api.http.get(
            path, headers={**alice.headers(), "Host": "evil.example"}, follow_redirects=False
        )
        assert response.status_code == 404, (path, response.status_code)
        assert "location" not in response.headers
        assert "evil.example" not in response.text


def test_time_claims_must_be_integers_of_a_sane_size(
    api: Api, cognito: CognitoPool, alice: User, serve: Callable[..., Api]
) -> None:
    now = int(time.time())

    def token(**overrides: object) -> dict[str, str]:
        claims = claims_for(cognito.issuer, cognito.client_id, alice.sub, **overrides)
        return {"Authorization": f"Bearer {sign(claims)}"}

    assert api.http.get("/items", headers=token()).status_code == 200  # the control
    for name, overrides in {
        "string exp": {"exp": str(now + 3600)},
        "401-digit exp": {"exp": int("9" * 401)},
        "float exp": {"exp": now + 3600.5},
        "boolean iat": {"iat": True},
        "string iat": {"iat": str(now)},
        "huge auth_time": {"auth_time": 10**30},
        "negative nbf": {"nbf": -1},
        "a week-long token": {"exp": now + 7 * 86400},
    }.items():
        response = api.http.get("/items", headers=token(**overrides))
        assert response.status_code == 401, (name, response.text)
        assert_error(response, 401, "invalid_token")

    strict = serve(COLLECTIONS_API_MAX_TOKEN_AGE_SECONDS="600")
    assert strict.http.get("/items", headers=token()).status_code == 200
    old = token(iat=now - 1800, auth_time=now - 1800, exp=now + 1800)
    assert_error(strict.http.get("/items", headers=old), 401, "token_expired")
    assert api.http.get("/items", headers=old).status_code == 200  # no maximum age by default


def _assert_policy_headers(response: object, path: str) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (path, name, dict(headers))
    assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    assert "server" not in headers, path


def test_security_headers_on_every_kind_of_response(api: Api, alice: User) -> None:
    responses = {
        "/version": api.http.get("/version"),
        "/items (401)": api.http.get("/items"),
        "/items (200)": api.http.get("/items", headers=alice.headers()),
        "/nowhere (404)": api.http.get("/nowhere"),
        "/search (422)": api.http.get("/search", headers=alice.headers()),
        "/items (413)": api.http.post("/items", content=b"x" * 70_000, headers=alice.headers()),
        "/openapi.json": api.http.get("/openapi.json"),
    }
    for path, response in responses.items():
        _assert_policy_headers(response, path)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["content-security-policy"].startswith("default-src 'none'"), path


def test_docs_page_policy_allows_only_its_own_script(api: Api) -> None:
    docs = api.http.get("/docs")
    _assert_policy_headers(docs, "/docs")
    policy = dict(
        part.strip().split(" ", 1) for part in docs.headers["content-security-policy"].split(";")
    )
    scripts = policy["script-src"].split()
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert scripts == ["'self'", f"'sha256-{digest}'"]
    # every script and style the page loads is same-origin (works offline)
    for src in re.findall(r'(?:src|href)="([^"]+)"', docs.text):
        assert src.startswith("/"), src
    assert policy["connect-src"] == "'self'" and policy["default-src"] == "'none'"


def test_malformed_http_gets_the_json_error_shape(api: Api) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET /items HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 400"), lines[0]
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert headers["content-type"] == "application/json"
    assert "server" not in headers
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_request" and error["request_id"] == headers["x-request-id"]
