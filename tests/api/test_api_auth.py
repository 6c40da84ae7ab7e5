"""Authentication through the real app over HTTP, with tokens from the emulator's Cognito and
tokens crafted to fail exactly one check each."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from runtime.api.auth import AuthUnavailable, JwksCache
from runtime.local.postgres import free_port
from tests.api.conftest import Api, CognitoPool, User
from tests.api.support import (
    assert_error,
    b64url,
    claims_for,
    emulator_signing_key,
    foreign_key,
    hs256_with_public_key,
    sign,
    unsigned,
)

# Words that would reveal internals in a refusal.
LEAKS = ("traceback", "exception", "jwt.", "pyjwt", "decodeerror", "signing key ", "http://", "kid")


def bad_tokens(cognito: CognitoPool, user: User) -> dict[str, tuple[str | None, str]]:
    """case -> (Authorization header value or None, expected error code)."""
    iss, client = cognito.issuer, cognito.client_id
    now = int(time.time())

    def ok(**overrides: object) -> dict:
        return claims_for(iss, client, user.sub, **overrides)

    public_pem = (
        emulator_signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head, _, signature = user.id_token.split(".")
    original = jwt.decode(user.id_token, options={"verify_signature": False})
    forged_payload = b64url(json.dumps({**original, "sub": "someone-else"}).encode())
    return {
        "no header": (None, "missing_token"),
        "empty bearer": ("Bearer", "invalid_authorization_header"),
        "basic scheme": ("Basic YWxpY2U6c2VjcmV0", "invalid_authorization_header"),
        "malformed": ("Bearer not-a-token", "invalid_token"),
        "malformed three parts": ("Bearer a.b.c", "invalid_token"),
        "garbage base64": ("Bearer eyJhbGciOiJSUzI1NiJ9.%%%.@@@", "invalid_token"),
        "wrong signature": (f"Bearer {sign(ok(), key=foreign_key())}", "invalid_token"),
        "tampered payload": (f"Bearer {head}.{forged_payload}.{signature}", "invalid_token"),
        "alg none": (
            f"Bearer {unsigned(ok(), {'alg': 'none', 'typ': 'JWT', 'kid': 'dummy'})}",
            "invalid_token",
        ),
        "HS256 keyed with the public key": (
            f"Bearer {hs256_with_public_key(ok(), public_pem)}",
            "invalid_token",
        ),
        "expired": (f"Bearer {sign(ok(iat=now - 7200, exp=now - 3600))}", "token_expired"),
        "not yet valid (nbf)": (f"Bearer {sign(ok(nbf=now + 3600))}", "invalid_token"),
        "issued in the future (iat)": (f"Bearer {sign(ok(iat=now + 3600))}", "invalid_token"),
        "wrong issuer": (
            f"Bearer {sign(ok(iss=iss.rsplit('/', 1)[0] + '/us-east-1_OtherPool'))}",
            "invalid_token",
        ),
        "wrong audience (id token)": (f"Bearer {sign(ok(aud='another-client'))}", "invalid_token"),
        "wrong client (access token)": (
            f"Bearer {sign(claims_for(iss, 'another-client', user.sub, token_use='access'))}",
            "invalid_token",
        ),
        "wrong token_use": (f"Bearer {sign(ok(token_use='refresh'))}", "invalid_token"),
        "id token claiming to be access": (
            f"Bearer {sign({**ok(), 'token_use': 'access'})}",  # aud, but no client_id
            "invalid_token",
        ),
        "no token_use": (f"Bearer {sign(ok(token_use=None))}", "invalid_token"),
        "no exp": (f"Bearer {sign(ok(exp=None))}", "invalid_token"),
        "no sub": (f"Bearer {sign(ok(sub=None))}", "invalid_token"),
        "sub with a path": (f"Bearer {sign(ok(sub='../../other'))}", "invalid_token"),
        "unknown kid": (
            f"Bearer {sign(ok(), key=foreign_key(), kid='rotated-2026')}",
            "invalid_token",
        ),
        "no kid": (f"Bearer {sign(ok(), kid=None)}", "invalid_token"),
    }


def test_bad_token_matrix_is_401_never_500(api: Api, cognito: CognitoPool, alice: User) -> None:
    failures = []
    for case, (authorization, code) in bad_tokens(cognito, alice).items():
        headers = {"Authorization": authorization} if authorization is not None else {}
        for method, path in (("GET", "/items"), ("GET", "/search?q=beach")):
            response = api.http.request(method, path, headers=headers)
            try:
                error = assert_error(response, 401, code)
                assert response.headers["www-authenticate"].startswith("Bearer"), case
                assert not any(word in error["message"].lower() for word in LEAKS), error
            except (AssertionError, KeyError, ValueError) as problem:
                failures.append(f"{case} {method} {path}: {problem}")
    assert not failures, "\n".join(failures)


def test_emulator_id_and_access_tokens_are_accepted(api: Api, alice: User) -> None:
    for use in ("id", "access"):
        response = api.http.get("/items", headers=alice.headers(use))
        assert response.status_code == 200, (use, response.text)
        assert response.json() == {"items": [], "next_cursor": None}


def test_token_signed_with_the_pool_key_is_accepted(
    api: Api, cognito: CognitoPool, alice: User
) -> None:
    """The crafted tokens above fail only for their one defect: the same recipe without it
    passes."""
    token = sign(claims_for(cognito.issuer, cognito.client_id, alice.sub))
    assert api.http.get("/items", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    token = sign(claims_for(cognito.issuer, cognito.client_id, alice.sub, token_use="access"))
    assert api.http.get("/items", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_unreachable_jwks_is_503_not_401_or_500(serve: Callable[..., Api], alice: User) -> None:
    api = serve(COLLECTIONS_COGNITO_JWKS_URL=f"http://127.0.0.1:{free_port()}/jwks.json")
    assert_error(api.http.get("/items", headers=alice.headers()), 503, "authentication_unavailable")


def test_sign_in_not_configured_is_503(serve: Callable[..., Api], alice: User) -> None:
    api = serve(COLLECTIONS_COGNITO_USER_POOL_ID="")
    assert_error(api.http.get("/items", headers=alice.headers()), 503, "authentication_unavailable")
    assert api.http.get("/health").status_code == 200  # public routes still work


class FakeJwks:
    def __init__(self, *kids: str) -> None:
        self.kids = list(kids)
        self.calls = 0
        self.fail = False

    def __call__(self, url: str, timeout: float) -> dict:
        self.calls += 1
        if self.fail:
            raise httpx.ConnectError("down")
        public = json.loads(RSAAlgorithm.to_jwk(emulator_signing_key().public_key()))
        return {"keys": [{**public, "kid": kid, "alg": "RS256", "use": "sig"} for kid in self.kids]}


def test_jwks_is_cached_and_refreshed_once_on_unknown_kid() -> None:
    clock = [1000.0]
    fetch = FakeJwks("k1")
    cache = JwksCache("https://example/jwks.json", fetch=fetch, clock=lambda: clock[0])

    assert cache.key("k1") is not None and fetch.calls == 1
    assert cache.key("k1") is not None and fetch.calls == 1  # cached

    fetch.kids.append("k2")  # the pool rotates its keys
    clock[0] += 60
    assert cache.key("k2") is not None and fetch.calls == 2  # one refresh found it

    assert cache.key("made-up") is None and fetch.calls == 2  # refreshed < 30 s ago: no fetch
    assert cache.key("made-up-2") is None and fetch.calls == 2
    clock[0] += 31
    assert cache.key("made-up-3") is None and fetch.calls == 3  # one more look, then none
    assert cache.key("made-up-4") is None and fetch.calls == 3

    fetch.fail = True  # the endpoint goes down: keep serving the keys we have
    clock[0] += 4000  # past the TTL
    assert cache.key("k1") is not None

    empty = JwksCache("https://example/jwks.json", fetch=fetch, clock=lambda: clock[0])
    with pytest.raises(AuthUnavailable):
        empty.key("k1")
