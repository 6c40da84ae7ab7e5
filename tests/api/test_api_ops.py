"""Operations through the real app over HTTP: health, version, request ids and access logs,
error shapes, body size and rate limits, CORS."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from runtime.domain import items as item_queries  # the routes import their queries per request
from runtime.local.postgres import LocalPostgres, free_port
from tests.api.conftest import AccessLog, Api, CognitoPool, User, configure_api
from tests.api.support import assert_error


def test_health_and_version_are_public(api: Api) -> None:
    health = api.http.get("/health")
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "database": "reachable", "migrations": "current"}
    assert api.http.get("/version").json() == {"git_sha": "dev", "build_time": "dev"}
    assert api.http.get("/openapi.json").json()["info"]["title"] == "Collections API"
    docs = api.http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # the page's assets come from the app itself (no CDN: local mode works offline)
    assert "cdn" not in docs.text and "https://" not in docs.text
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        assert asset in docs.text
        served = api.http.get(asset)
        assert served.status_code == 200 and len(served.content) > 100_000, asset


def test_version_comes_from_the_build(serve: Callable[..., Api]) -> None:
    api = serve(COLLECTIONS_GIT_SHA="0123abc", COLLECTIONS_BUILD_TIME="2026-11-23T10:00:00Z")
    assert api.http.get("/version").json() == {
        "git_sha": "0123abc",
        "build_time": "2026-11-23T10:00:00Z",
    }


def test_health_is_503_when_migrations_are_pending_or_the_database_is_down(
    serve: Callable[..., Api], postgres: LocalPostgres, alice: User
) -> None:
    empty = postgres.create_database(f"empty_{uuid.uuid4().hex[:8]}")
    api = serve(COLLECTIONS_DATABASE_URL=empty)
    assert_error(api.http.get("/health"), 503, "migrations_pending")

    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    api = serve(COLLECTIONS_DATABASE_URL=down)
    error = assert_error(api.http.get("/health"), 503, "database_unreachable")
    assert "127.0.0.1" not in error["message"] and "psycopg" not in error["message"]
    # a signed-in request needing the database: 503, not 500
    assert_error(api.http.get("/items", headers=alice.headers()), 503, "database_unavailable")


def test_request_ids_are_echoed_and_logged(api: Api, alice: User, access_log: AccessLog) -> None:
    first = api.http.get("/items", headers=alice.headers())
    second = api.http.get("/items", headers={"Authorization": "Bearer nope"})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert len(set(ids)) == 2 and all(len(i) >= 16 for i in ids)
    assert second.json()["error"]["request_id"] == ids[1]

    lines = {r.request_id: r for r in access_log.requests(2)}
    assert set(ids) <= set(lines)
    ok, refused = lines[ids[0]], lines[ids[1]]
    assert (ok.method, ok.route, ok.status, ok.user_id) == ("GET", "/items", 200, alice.sub)
    assert (refused.status, refused.user_id) == (401, None)
    assert ok.duration_ms >= 0
    # the Powertools formatter renders the line as one JSON object with those keys
    rendered = json.loads(logging.getLogger("api").handlers[0].format(ok))
    assert rendered["request_id"] == ids[0] and rendered["service"] == "api"


def test_error_shape_everywhere(api: Api, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_error(api.http.get("/nowhere"), 404, "not_found")
    assert_error(api.http.put("/items", headers=alice.headers()), 405, "method_not_allowed")
    error = assert_error(api.http.get("/items", params={"limit": 0}, headers=alice.headers()), 422)
    assert error["details"][0]["location"] == ["query", "limit"]
    assert_error(api.http.get("/items/not-a-uuid", headers=alice.headers()), 404, "not_found")
    bad_utf8 = api.http.post(
        "/items",
        headers={**alice.headers(), "content-type": "application/json"},
        content=b'{"file_name": "\xff\xfe"}',
    )
    assert_error(bad_utf8, 422, "invalid_body")
    not_allowed = api.http.request("OPTIONS", "/items/upload", headers=alice.headers())
    assert_error(not_allowed, 405)
    assert not_allowed.headers["allow"] == "POST"
    assert api.http.put("/items", headers=alice.headers()).headers["allow"] == "GET, POST"

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-internal-detail at /var/task/runtime")

    item = api.http.post(
        "/items",
        headers=alice.headers(),
        json={"file_name": "a.jpg", "content_type": "image/jpeg", "size": 5},
    ).json()["item"]
    monkeypatch.setattr(item_queries, "latest_analysis", boom)
    response = api.http.get(f"/items/{item['id']}", headers=alice.headers())
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in response.text


def test_body_size_limit(api: Api, alice: User) -> None:
    big = {"file_name": "a.jpg", "content_type": "image/jpeg", "size": 5, "pad": "x" * 100_000}
    assert_error(
        api.http.post("/items", headers=alice.headers(), json=big), 413, "payload_too_large"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"file_name": "a.jpg", "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = api.http.post(
        "/items",
        headers={**alice.headers(), "content-type": "application/json"},
        content=chunks(),
    )
    assert_error(response, 413, "payload_too_large")


def test_rate_limit_in_local_mode(serve: Callable[..., Api], alice: User) -> None:
    api = serve(COLLECTIONS_API_RATE_LIMIT_PER_MINUTE="5")
    statuses = [api.http.get("/items", headers=alice.headers()).status_code for _ in range(5)]
    assert statuses == [200] * 5
    limited = api.http.get("/items", headers=alice.headers())
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert_error(api.http.get("/version"), 429)  # per client address too, signed in or not


def test_cors_from_configuration(serve: Callable[..., Api], alice: User) -> None:
    api = serve(COLLECTIONS_CORS_ORIGINS='["https://app.example.com"]')
    preflight = api.http.options(
        "/items",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    refused = api.http.options(
        "/items",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in refused.headers

    response = api.http.get("/items", headers={"Origin": "https://app.example.com"})
    assert response.status_code == 401  # errors carry CORS headers too, so pages can read them
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in response.headers["access-control-expose-headers"]
    other = api.http.get("/version", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_search_dates_must_be_rfc3339(api: Api, alice: User) -> None:
    """`0` or a bare date would parse (a Unix time, midnight); only the documented form may."""
    for bad in ("0", "1700000000", "2026-11-23", "yesterday", "2026-11-23T10:00"):
        refused = api.http.get(
            "/search", params={"q": "x", "created_from": bad}, headers=alice.headers()
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "validation_error"
    for good in ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.5+01:00"):
        accepted = api.http.get(
            "/search", params={"q": "x", "created_to": good}, headers=alice.headers()
        )
        assert accepted.status_code == 200, (good, accepted.text)


def test_local_mode_serves_the_api_from_several_processes(
    env: object, cognito: CognitoPool, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--workers 2``: two server processes under one supervisor, each serving the app as
    configured (signed-in requests, the JSON error for bad HTTP), all stopping with it."""
    configure_api(monkeypatch, cognito)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "runtime.local.api_server", "--port", str(port), "--workers", "2"],
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        workers = [
            pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2  # (besides multiprocessing's resource tracker)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            statuses = {client.get("/items", headers=alice.headers()).status_code for _ in range(8)}
            assert statuses == {200}
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = b""
            while chunk := raw.recv(4096):  # the server closes the connection after it
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400") and b"malformed_request" in reply
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in children)


def _running(pid: str) -> bool:
    """True if the process exists and has not exited (an unreaped zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_every_connection_sends_small_writes_at_once() -> None:
    """The socket uvicorn binds for several workers has protocol 0, so asyncio leaves Nagle's
    algorithm on for its connections; the server turns it off, or a keep-alive response's body
    waits for the client's delayed ACK of its headers (~40 ms a request)."""
    import threading

    import uvicorn

    from runtime.local.api_server import server_config

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = server_config(app, host="127.0.0.1", port=free_port(), lifespan="off")
    listening = config.bind_socket()  # what uvicorn's supervisor shares with its workers
    assert listening.proto == 0
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10  # a hang guard, not a speed check
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}") as client:
            assert [client.get("/").text for _ in range(2)] == ["ok", "ok"]
            connections = list(server.server_state.connections)
            assert len(connections) == 1
            accepted = connections[0].transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
