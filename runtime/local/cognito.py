"""The local user pool: created once on the emulator, found again on later starts."""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

POOL_NAME = "collections-local"
CLIENT_NAME = "collections-local-cli"
DEMO_USER = "demo@collections.local"


@dataclass(frozen=True)
class LocalPool:
    user_pool_id: str
    app_client_id: str


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str


def ensure_pool(idp: Any) -> LocalPool:
    pools = idp.list_user_pools(MaxResults=60)["UserPools"]
    pool_id = next((p["Id"] for p in pools if p["Name"] == POOL_NAME), None)
    if pool_id is None:
        pool_id = idp.create_user_pool(
            PoolName=POOL_NAME,
            UsernameAttributes=["email"],
            Policies={"PasswordPolicy": {"MinimumLength": 12, "RequireNumbers": True}},
        )["UserPool"]["Id"]
    clients = idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    client_id = next((c["ClientId"] for c in clients if c["ClientName"] == CLIENT_NAME), None)
    if client_id is None:
        client_id = idp.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=CLIENT_NAME,
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
    return LocalPool(pool_id, client_id)


def ensure_user(
    idp: Any, pool: LocalPool, credentials_file: Path, username: str = DEMO_USER
) -> DemoUser:
    """The demo user, created on first start with a random password kept in a 0600 file."""
    if credentials_file.exists():
        stored = DemoUser(**json.loads(credentials_file.read_text()))
        try:
            idp.admin_get_user(UserPoolId=pool.user_pool_id, Username=stored.username)
            return stored
        except idp.exceptions.UserNotFoundException:
            pass
    user = DemoUser(username, "Demo-" + secrets.token_urlsafe(12) + "1a")
    create_user(idp, pool, user.username, user.password)
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.touch(mode=0o600)
    credentials_file.write_text(json.dumps(asdict(user)))
    return user


def create_user(idp: Any, pool: LocalPool, username: str, password: str) -> None:
    with contextlib.suppress(idp.exceptions.UsernameExistsException):
        idp.admin_create_user(
            UserPoolId=pool.user_pool_id,
            Username=username,
            UserAttributes=[
                {"Name": "email", "Value": username},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )
    idp.admin_set_user_password(
        UserPoolId=pool.user_pool_id, Username=username, Password=password, Permanent=True
    )
