"""The web app's routes over HTTP: the page and its fingerprinted assets (cache headers, the
content security policy, no stale versions), and the session routes (sign-in through the user
pool, the HttpOnly refresh cookie, the same-origin checks, sign-out revoking the session)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.local.cloud import LocalCloud, LocalContext
from runtime.web import assets
from tests.api.conftest import PASSWORD, Api, CognitoPool, User, configure_api
from tests.api.support import http_api_event

SAME = {"x-collections-request": "1"}


def test_the_page_names_its_assets_under_one_version(api: Api) -> None:
    page = api.http.get("/?q=tram&mode=keyword")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    version = assets().version
    referenced = set(re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text))
    assert referenced and all(ref.startswith(f"/assets/{version}/") for ref in referenced)
    for ref in referenced:
        asset = api.http.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["x-content-type-options"] == "nosniff"
    script = api.http.get(f"/assets/{version}/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    # another version's URL (old or made up) is not today's bytes under a cached name
    assert api.http.get(f"/assets/{'0' * 16}/app.js").status_code == 404
    assert api.http.get(f"/assets/{version}/../../config.py").status_code == 404
    assert api.http.get(f"/assets/{version}/nothing.js").status_code == 404


def test_the_page_runs_only_its_own_code(api: Api) -> None:
    page = api.http.get("/")
    csp = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
    )
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    # the bucket (here the emulator) is the one other place it loads images from and posts to
    storage = api.cloud.endpoint
    assert csp["img-src"].split() == ["'self'", "data:", storage]
    assert csp["connect-src"].split() == ["'self'", storage]
    # nothing inline that such a policy would block
    assert "<script>" not in page.text and " style=" not in page.text
    assert not re.search(r"<[^>]*\son\w+=", page.text)


def test_sign_in_sets_an_httponly_cookie_and_returns_a_token_that_works(
    api: Api, alice: User
) -> None:
    signed_in = api.http.post(
        "/auth/login", json={"username": alice.username, "password": PASSWORD}, headers=SAME
    )
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()
    assert body["username"] == alice.username and body["expires_in"] > 60
    assert signed_in.headers["cache-control"] == "no-store"
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("collections-session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/auth/" in cookie
    assert body["id_token"] not in cookie  # the token lives in the page's memory only
    token = {"Authorization": f"Bearer {body['id_token']}"}
    assert api.http.get("/items", headers=token).status_code == 200

    # a reload: the cookie alone gives a new token for the same user
    refreshed = api.http.post("/auth/refresh", headers=SAME)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["username"] == alice.username
    again = {"Authorization": f"Bearer {refreshed.json()['id_token']}"}
    assert api.http.get("/items", headers=again).status_code == 200

    # sign-out clears the cookie and revokes the session: the old cookie is refused too
    stolen = api.http.cookies.get("collections-session")
    out = api.http.post("/auth/logout", headers=SAME)
    assert out.status_code == 204
    assert (
        'collections-session=""' in out.headers["set-cookie"]
        or "Max-Age=0" in (out.headers["set-cookie"])
    )
    assert api.http.post("/auth/refresh", headers=SAME).status_code == 401
    replay = httpx.post(
        f"{api.url}/auth/refresh", headers={**SAME, "Cookie": f"collections-session={stolen}"}
    )
    assert replay.status_code == 401, replay.text


def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api, alice: User) -> None:
    answers = [
        api.http.post(
            "/auth/login", json={"username": name, "password": "Wrong-pass-1"}, headers=SAME
        )
        for name in (alice.username, "nobody@example.com")
    ]
    assert [a.status_code for a in answers] == [401, 401]
    assert {a.json()["error"]["code"] for a in answers} == {"wrong_credentials"}
    assert "set-cookie" not in answers[0].headers


def test_session_routes_refuse_other_sites(api: Api, alice: User) -> None:
    body = {"username": alice.username, "password": PASSWORD}
    no_header = api.http.post("/auth/login", json=body)
    assert no_header.status_code == 403
    assert no_header.json()["error"]["code"] == "csrf_check_failed"
    other_site = api.http.post(
        "/auth/login", json=body, headers={**SAME, "Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    own = api.http.post("/auth/login", json=body, headers={**SAME, "Origin": api.url})
    assert own.status_code == 200
    for path in ("/auth/refresh", "/auth/logout"):
        assert api.http.post(path).status_code == 403
        assert api.http.post(path, headers={**SAME, "Origin": "null"}).status_code == 403
    # no CORS grant for anyone: a cross-origin script cannot even send the header
    preflight = api.http.options(
        "/auth/refresh",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-collections-request",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_refresh_without_a_session_or_with_a_forged_one(api: Api) -> None:
    fresh = httpx.Client(base_url=api.url)
    assert fresh.post("/auth/refresh", headers=SAME).status_code == 401
    fresh.cookies.set("collections-session", "made-up", domain="127.0.0.1", path="/auth/")
    forged = fresh.post("/auth/refresh", headers=SAME)
    assert forged.status_code == 401
    assert "collections-session" in forged.headers.get("set-cookie", "")  # cleared
    fresh.close()


@pytest.mark.parametrize("field", ["username", "password"])
def test_sign_in_input_is_bounded(api: Api, field: str) -> None:
    body = {"username": "a@example.com", "password": "x"}
    body[field] = "a" * 2000
    answer = api.http.post("/auth/login", json=body, headers=SAME)
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["location"] == ["body", field]


@pytest.fixture
def gateway(
    env: LocalCloud, cognito: CognitoPool, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The Lambda handler, called with API Gateway HTTP API events (payload format 2.0)."""
    configure_api(monkeypatch, cognito)
    from runtime.handlers import api as module

    module.reset()
    yield lambda event: module.handler(event, LocalContext("api", 1024, 29))
    module.reset()


def test_behind_api_gateway_the_page_loads_and_the_session_cookie_is_secure(
    gateway: Any, alice: User
) -> None:
    page = gateway(http_api_event("GET", "/"))
    assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html")
    assert "script-src 'self'" in page["headers"]["content-security-policy"]

    app_origin = "https://abc123.execute-api.us-east-1.amazonaws.com"
    login = http_api_event(
        "POST",
        "/auth/login",
        body=json.dumps({"username": alice.username, "password": PASSWORD}).encode(),
        content_type="application/json",
    )
    login["headers"].update({**SAME, "origin": app_origin})
    signed_in = gateway(login)
    assert signed_in["statusCode"] == 200, signed_in["body"]
    (cookie,) = signed_in["cookies"]
    assert cookie.startswith("__Secure-collections-session=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "Path=/auth/" in cookie

    refresh = http_api_event("POST", "/auth/refresh")
    refresh["headers"].update({**SAME, "origin": app_origin})
    refresh["cookies"] = [cookie.split(";")[0]]
    renewed = gateway(refresh)
    assert renewed["statusCode"] == 200, renewed["body"]
    assert json.loads(renewed["body"])["username"] == alice.username
    # the plain-http twin of the app's origin is another site
    login["headers"]["origin"] = app_origin.replace("https:", "http:")
    assert gateway(login)["statusCode"] == 403
