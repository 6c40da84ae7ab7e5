"""API fixtures: a Cognito user pool on the emulator (moto's server) with two users, and the real
app served by uvicorn on a loopback port, configured against the shared ``env`` stack."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI

from runtime.local.api_server import server_config
from runtime.local.cloud import REGION, LocalCloud
from tests.conftest import reset_process_state

PASSWORD = "Correct-Horse-9-battery"
MOTO_KID = "dummy"  # the key id of the emulator's (fixed) signing key


@dataclass
class User:
    username: str
    sub: str
    id_token: str
    access_token: str

    def headers(self, use: str = "id") -> dict[str, str]:
        token = self.id_token if use == "id" else self.access_token
        return {"Authorization": f"Bearer {token}"}


@dataclass
class CognitoPool:
    endpoint: str
    pool_id: str
    client_id: str
    users: dict[str, User] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/{self.pool_id}/.well-known/jwks.json"

    def client(self) -> Any:
        return boto3.client("cognito-idp", endpoint_url=self.endpoint, region_name=REGION)

    def user(self, username: str) -> User:
        if username not in self.users:
            idp = self.client()
            idp.admin_create_user(
                UserPoolId=self.pool_id,
                Username=username,
                TemporaryPassword="Temporary-Pass-1!",
                MessageAction="SUPPRESS",
            )
            idp.admin_set_user_password(
                UserPoolId=self.pool_id, Username=username, Password=PASSWORD, Permanent=True
            )
            self.users[username] = self.sign_in(username)
        return self.users[username]

    def sign_in(self, username: str) -> User:
        result = self.client().initiate_auth(
            ClientId=self.client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
        )["AuthenticationResult"]
        claims = jwt.decode(result["IdToken"], options={"verify_signature": False})
        return User(username, claims["sub"], result["IdToken"], result["AccessToken"])

    def environment(self) -> dict[str, str]:
        return {
            "COLLECTIONS_COGNITO_USER_POOL_ID": self.pool_id,
            "COLLECTIONS_COGNITO_APP_CLIENT_ID": self.client_id,
            "COLLECTIONS_COGNITO_JWKS_URL": self.jwks_url,
        }


@pytest.fixture(scope="session")
def cognito(emulator: str) -> CognitoPool:
    idp = boto3.client("cognito-idp", endpoint_url=emulator, region_name=REGION)
    pool_id = idp.create_user_pool(PoolName=f"collections-{uuid.uuid4().hex[:8]}")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="collections-api",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    return CognitoPool(endpoint=emulator, pool_id=pool_id, client_id=client_id)


@pytest.fixture
def alice(cognito: CognitoPool) -> User:
    return cognito.user("alice@example.com")


@pytest.fixture
def bob(cognito: CognitoPool) -> User:
    return cognito.user("bob@example.com")


class LiveServer:
    """uvicorn serving an ASGI app on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Configured as `collections dev` runs it (no proxy headers, JSON errors for bad HTTP).
        config = server_config(
            app,
            host="127.0.0.1",
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@dataclass
class Api:
    url: str
    app: FastAPI
    http: httpx.Client
    cloud: LocalCloud
    cognito: CognitoPool

    def s3_keys(self, prefix: str = "") -> set[str]:
        s3 = self.cloud.client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.cloud.bucket, Prefix=prefix
        )
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def configure_api(monkeypatch: pytest.MonkeyPatch, cognito: CognitoPool, **extra: str) -> None:
    for name, value in {
        **cognito.environment(),
        "COLLECTIONS_API_RATE_LIMIT_PER_MINUTE": "0",
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    reset_process_state()


@pytest.fixture
def serve(env: LocalCloud, cognito: CognitoPool, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``serve(**env_overrides)`` starts the app (configured from the environment) on a port."""
    from runtime.api.app import create_app

    started: list[tuple[LiveServer, httpx.Client]] = []

    def start(**extra: str) -> Api:
        configure_api(monkeypatch, cognito, **extra)
        app = create_app()
        server = LiveServer(app).__enter__()
        client = httpx.Client(base_url=server.url, timeout=60)
        started.append((server, client))
        return Api(server.url, app, client, env, cognito)

    yield start
    for server, client in started:
        client.close()
        server.__exit__(None, None, None)


@pytest.fixture
def api(serve: Any) -> Api:
    return serve()


class AccessLog(logging.Handler):
    """The API's log records. The access line ("request") is written once the response has been
    sent, so a test reads those lines with ``requests(n)``, which waits for n of them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def requests(self, count: int) -> list[logging.LogRecord]:
        deadline = time.monotonic() + 10  # a hang guard: the line follows the response at once
        while True:
            lines = [r for r in self.records if r.getMessage() == "request"]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.01)


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger("api")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
