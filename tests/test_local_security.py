"""Local mode keeps AWS's promises: attacks a security review made on a local instance, replayed
against local mode's own emulator front, identity key, database and state file (in this
process, on loopback ports)."""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import jwt
import psycopg
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.api.auth import AuthError, CognitoVerifier
from runtime.api.urls import presigned_upload
from runtime.local.cloud import REGION, bootstrap
from runtime.local.cognito import LocalPool, create_user, ensure_pool
from runtime.local.emulator import LocalEmulator
from runtime.local.gate import Credentials
from runtime.local.identity import AwsCredentials, SigningKey
from runtime.local.postgres import LocalPostgres, free_port

PASSWORD = "Local-secure-passw0rd"


@dataclass
class Local:
    emulator: LocalEmulator
    credentials: AwsCredentials
    data_dir: Path
    bucket: str
    pool: LocalPool

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint,
            region_name=REGION,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            config=Config(**config) if config else None,
        )

    def anonymous(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint,
            region_name=REGION,
            config=Config(signature_version=UNSIGNED),
        )

    def stranger(self, service: str, key_id: str | None = None) -> Any:
        """Signed, but with credentials this installation never issued."""
        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint,
            region_name=REGION,
            aws_access_key_id=key_id or "AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )

    def presigner(self) -> Any:
        return self.client("s3", signature_version="s3v4", s3={"addressing_style": "path"})


def _emulator(data_dir: Path, port: int) -> tuple[LocalEmulator, AwsCredentials]:
    credentials = AwsCredentials.load_or_create(data_dir / "aws-credentials")
    emulator = LocalEmulator(
        data_dir / "aws-state.pkl",
        port=port,
        credentials=Credentials(credentials.access_key_id, credentials.secret_access_key),
        signing_key=SigningKey.load_or_create(data_dir / "identity-key.pem"),
    )
    return emulator.start(), credentials


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    data_dir = tmp_path_factory.mktemp("local-security")
    emulator, credentials = _emulator(data_dir, free_port())
    keys = {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
    }
    saved = {name: os.environ.get(name) for name in (*keys, "AWS_SESSION_TOKEN")}
    os.environ.update(keys)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    # boto3's default session keeps the credentials it resolved first: start a new one.
    boto3.DEFAULT_SESSION = None
    try:
        cloud = bootstrap(emulator.endpoint, stack="sec")
        pool = ensure_pool(cloud.client("cognito-idp"))
        yield Local(emulator, credentials, data_dir, cloud.bucket, pool)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = None
        emulator.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- identity --------------------------------------------------------------------------------------


def _sign_in(local: Local, username: str) -> str:
    create_user(local.client("cognito-idp"), local.pool, username, PASSWORD)
    result = local.anonymous("cognito-idp").initiate_auth(
        ClientId=local.pool.app_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
    )
    return result["AuthenticationResult"]["IdToken"]


def test_tokens_are_signed_with_this_installations_key_and_forgeries_are_refused(
    local: Local,
) -> None:
    from moto.utilities.utils import load_resource

    token = _sign_in(local, "victim@collections.local")
    verifier = CognitoVerifier(
        region=REGION,
        user_pool_id=local.pool.user_pool_id,
        app_client_id=local.pool.app_client_id,
        jwks_url=f"{local.emulator.endpoint}/{local.pool.user_pool_id}/.well-known/jwks.json",
    )
    victim = verifier.verify(token)  # the genuine token
    key = SigningKey.load_or_create(local.data_dir / "identity-key.pem")
    assert jwt.get_unverified_header(token)["kid"] == key.kid != "dummy"
    assert _mode(local.data_dir / "identity-key.pem") == 0o600
    published = httpx.get(
        f"{local.emulator.endpoint}/{local.pool.user_pool_id}/.well-known/jwks.json"
    ).json()
    assert [k["kid"] for k in published["keys"]] == [key.kid]

    claims = dict(victim.claims)
    packaged = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), "RS256").key
    random_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forgeries = {
        "the emulator's packaged key": jwt.encode(
            claims, packaged, algorithm="RS256", headers={"kid": "dummy"}
        ),
        "the packaged key, this installation's kid": jwt.encode(
            claims, packaged, algorithm="RS256", headers={"kid": key.kid}
        ),
        "a random key, this installation's kid": jwt.encode(
            claims, random_key, algorithm="RS256", headers={"kid": key.kid}
        ),
    }
    for name, forged in forgeries.items():
        with pytest.raises(AuthError):
            verifier.verify(forged)
            pytest.fail(f"accepted a token signed with {name}")


# -- the emulator refuses anonymous and foreign callers ----------------------------------------


def test_anonymous_and_foreign_callers_are_refused(local: Local) -> None:
    s3 = local.client("s3")
    s3.put_object(Bucket=local.bucket, Key="users/a/items/1/original", Body=b"secret")
    ssm = local.client("ssm")
    ssm.put_parameter(Name="/collections/sec/apiKey", Value="sk-123", Type="SecureString")

    attacks = {
        "anonymous bucket listing": lambda c: c("s3").list_objects_v2(Bucket=local.bucket),
        "anonymous list of buckets": lambda c: c("s3").list_buckets(),
        "anonymous read": lambda c: c("s3").get_object(
            Bucket=local.bucket, Key="users/a/items/1/original"
        ),
        "anonymous overwrite": lambda c: c("s3").put_object(
            Bucket=local.bucket, Key="users/a/items/1/original", Body=b"x"
        ),
        "a secret's value": lambda c: c("ssm").get_parameter(
            Name="/collections/sec/apiKey", WithDecryption=True
        ),
        "the user pool's users": lambda c: c("cognito-idp").list_users(
            UserPoolId=local.pool.user_pool_id
        ),
        "the queues": lambda c: c("sqs").list_queues(),
    }
    for name, attack in attacks.items():
        for caller in (local.anonymous, local.stranger):
            with pytest.raises(ClientError) as refused:
                attack(caller)
            status = refused.value.response["ResponseMetadata"]["HTTPStatusCode"]
            assert status in (400, 403), (name, status)
    # the right key id with a wrong secret
    impostor = local.stranger("s3", key_id=local.credentials.access_key_id)
    with pytest.raises(ClientError):
        impostor.list_objects_v2(Bucket=local.bucket)
    # moto's control API (state dump, reset) is closed
    for path in ("/moto-api/data.json", "/moto-api/reset", "/moto-api/"):
        assert httpx.get(local.emulator.endpoint + path).status_code == 403, path
        assert httpx.post(local.emulator.endpoint + path).status_code == 403, path
    # the installation's own credentials work
    assert s3.get_object(Bucket=local.bucket, Key="users/a/items/1/original")["Body"].read() == (
        b"secret"
    )
    assert ssm.get_parameter(Name="/collections/sec/apiKey", WithDecryption=True)["Parameter"][
        "Value"
    ] == ("sk-123")


# -- presigned GETs -----------------------------------------------------------------------------


def _replace_query(url: str, **changes: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def test_presigned_gets_are_checked_like_s3(local: Local) -> None:
    s3 = local.client("s3")
    for key in ("users/a/items/2/original", "users/b/items/3/original"):
        s3.put_object(Bucket=local.bucket, Key=key, Body=key.encode())
    presigner = local.presigner()

    def url(key: str, expires: int = 300) -> str:
        return presigner.generate_presigned_url(
            "get_object", Params={"Bucket": local.bucket, "Key": key}, ExpiresIn=expires
        )

    genuine = url("users/a/items/2/original")
    assert httpx.get(genuine).content == b"users/a/items/2/original"

    short = url("users/a/items/2/original", expires=1)
    unsigned = urllib.parse.urlunsplit(urllib.parse.urlsplit(genuine)._replace(query=""))
    other_key = genuine.replace("users/a/items/2/original", "users/b/items/3/original")
    attacks = {
        "unsigned": unsigned,
        "tampered signature": _replace_query(genuine, **{"X-Amz-Signature": "0" * 64}),
        "another object with the signature of this one": other_key,
        "expiry stretched": _replace_query(genuine, **{"X-Amz-Expires": "604800"}),
        "another access key": _replace_query(
            genuine,
            **{
                "X-Amz-Credential": "AKIAIOSFODNN7EXAMPLE/"
                + urllib.parse.parse_qs(urllib.parse.urlsplit(genuine).query)["X-Amz-Credential"][
                    0
                ].split("/", 1)[1]
            },
        ),
        "a listing of the bucket, signature of a read": genuine.split("/users/")[0]
        + "?"
        + urllib.parse.urlsplit(genuine).query,
    }
    for name, attack in attacks.items():
        response = httpx.get(attack)
        assert response.status_code in (400, 403), (name, response.status_code)
        assert b"users/" not in response.content, name
    time.sleep(2.1)
    expired = httpx.get(short)
    assert expired.status_code == 403 and b"expired" in expired.content


# -- presigned POSTs ----------------------------------------------------------------------------


def _post(form: dict[str, Any], data: bytes, content_type: str = "image/png") -> httpx.Response:
    return httpx.post(
        form["url"], data=form["fields"], files={"file": ("x.png", data, content_type)}
    )


def _form(local: Local, key: str, **kwargs: Any) -> dict[str, Any]:
    return presigned_upload(
        local.presigner(),
        bucket=local.bucket,
        key=key,
        content_type=kwargs.pop("content_type", "image/png"),
        max_bytes=kwargs.pop("max_bytes", 1000),
    )


def test_presigned_post_conditions_are_enforced(local: Local) -> None:
    s3 = local.client("s3")
    victim_key, attacker_key = "users/a/items/4/original", "users/b/items/5/original"
    s3.put_object(Bucket=local.bucket, Key=victim_key, Body=b"the victim's image")
    attacker = _form(local, attacker_key)

    def with_fields(**changes: str | None) -> dict[str, Any]:
        fields = {k: v for k, v in {**attacker["fields"], **changes}.items() if v is not None}
        return {**attacker, "fields": fields}

    attacks = {
        "another user's key": (with_fields(key=victim_key), b"\x89PNG evil", "image/png"),
        "another content type": (
            with_fields(**{"Content-Type": "text/html"}),
            b"<script>",
            "text/html",
        ),
        "too large": (attacker, b"x" * 1001, "image/png"),
        "empty": (attacker, b"", "image/png"),
        "no signature": (with_fields(**{"x-amz-signature": None}), b"png", "image/png"),
        "no policy": (with_fields(policy=None), b"png", "image/png"),
        "a field the policy does not name": (
            with_fields(**{"x-amz-meta-owner": "a"}),
            b"png",
            "image/png",
        ),
        "anonymous POST": (
            {"url": attacker["url"], "fields": {"key": victim_key}},
            b"png",
            "image/png",
        ),
    }
    for name, (form, data, content_type) in attacks.items():
        response = _post(form, data, content_type)
        assert response.status_code in (400, 403), (name, response.status_code, response.text)
    assert s3.get_object(Bucket=local.bucket, Key=victim_key)["Body"].read() == (
        b"the victim's image"
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=local.bucket, Prefix=attacker_key)

    # the genuine form works, once
    assert _post(attacker, b"\x89PNG fine").status_code == 204
    assert s3.get_object(Bucket=local.bucket, Key=attacker_key)["Body"].read() == b"\x89PNG fine"


def test_presigned_post_expires(local: Local, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.api import urls

    monkeypatch.setattr(urls, "UPLOAD_EXPIRES_SECONDS", 1)
    form = _form(local, "users/b/items/6/original")
    time.sleep(2.1)
    response = _post(form, b"png")
    assert response.status_code == 403 and "expired" in response.text


# -- state --------------------------------------------------------------------------------------


def test_state_with_secure_strings_is_saved_atomically_and_privately(local: Local) -> None:
    ssm = local.client("ssm")
    ssm.put_parameter(
        Name="/collections/sec/anthropicApiKey", Value="sk-ant-x", Type="SecureString"
    )
    problems = local.emulator.save()
    state = local.emulator.state_file
    assert problems == []
    assert _mode(state) == 0o600
    assert not [p for p in state.parent.iterdir() if p.name.endswith(".tmp")]

    ssm.delete_parameter(Name="/collections/sec/anthropicApiKey")
    assert local.emulator._restore()
    value = ssm.get_parameter(Name="/collections/sec/anthropicApiKey", WithDecryption=True)
    assert value["Parameter"]["Value"] == "sk-ant-x"


def test_a_service_that_cannot_be_saved_keeps_its_previous_state(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.local import emulator as emulator_module

    ssm = local.client("ssm")
    ssm.put_parameter(Name="/collections/sec/kept", Value="before", Type="SecureString")
    assert local.emulator.save() == []
    ssm.put_parameter(
        Name="/collections/sec/kept", Value="after", Type="SecureString", Overwrite=True
    )
    real = emulator_module._dumps

    def failing(value: Any) -> bytes:
        if any(
            "SimpleSystemManager" in type(b).__name__ for r in value.values() for b in r.values()
        ):
            raise TypeError("cannot pickle this backend")
        return real(value)

    monkeypatch.setattr(emulator_module, "_dumps", failing)
    problems = local.emulator.save()
    assert (
        len(problems) == 1
        and "ssm" in problems[0]
        and "previous saved state was kept" in (problems[0])
    )
    monkeypatch.setattr(emulator_module, "_dumps", real)
    assert local.emulator._restore()
    value = ssm.get_parameter(Name="/collections/sec/kept", WithDecryption=True)
    assert value["Parameter"]["Value"] == "before"
    assert _mode(local.emulator.state_file) == 0o600


# -- database -----------------------------------------------------------------------------------


def test_database_refuses_connections_without_its_password(postgres: LocalPostgres) -> None:
    assert _mode(postgres.password_file) == 0o600
    with psycopg.connect(postgres._dsn("postgres")) as conn:  # the password file: fine
        assert conn.execute("SELECT 1").fetchone() == (1,)
    for dsn in (
        f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres passfile=/dev/null",
        f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres password=guess",
    ):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=5).close()


def test_a_trust_cluster_of_an_earlier_version_gets_a_password(tmp_path: Path) -> None:
    old = LocalPostgres(tmp_path / "pg", ephemeral=True)
    old.data_dir.mkdir()
    old._prepare_permissions()
    old._run("initdb", "-D", str(old.data_dir), "-U", "postgres", "--auth=trust", "--no-sync")
    old.start()
    try:
        hba = (old.data_dir / "pg_hba.conf").read_text()
        assert "trust" not in hba.replace("# Written by Collections", "")
        with psycopg.connect(old._dsn("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                f"host=127.0.0.1 port={old.port} user=postgres dbname=postgres passfile=/dev/null",
                connect_timeout=5,
            ).close()
    finally:
        old.stop()


# -- the CLI finds the product ------------------------------------------------------------------


def test_cli_finds_the_product_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.cli.profiles import ProfileError, load_profile
    from runtime.local.discovery import forget_data_dir, remember_data_dir

    data_dir = tmp_path / "somewhere" / "data"
    data_dir.mkdir(parents=True)
    profile = {
        "api_url": "http://127.0.0.1:1",
        "region": REGION,
        "user_pool_id": "us-east-1_x",
        "app_client_id": "c",
        "cognito_endpoint": "http://127.0.0.1:2",
    }
    (data_dir / "dev.json").write_text(json.dumps(profile))
    monkeypatch.setenv("COLLECTIONS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("COLLECTIONS_LOCAL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProfileError, match="no local product found"):
        load_profile("local")
    remember_data_dir(data_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_profile("local").api_url == profile["api_url"]
    forget_data_dir(data_dir)
    with pytest.raises(ProfileError, match="no local product found"):
        load_profile("local")
