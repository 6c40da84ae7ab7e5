"""Cognito token verification: the tenant is the ``sub`` of a token this service verified itself.

Checks, in order (each failure is a 401 with a sentence saying which check failed):

1. an ``Authorization: Bearer <token>`` header with a three-part JWT;
2. ``alg`` is RS256 (``none``, HS256 and everything else are refused before any key is used);
3. ``kid`` names a key of the pool's JWKS. The JWKS is cached for an hour and fetched again
   once when an unknown ``kid`` shows up (key rotation), at most once per ``MIN_REFRESH_SECONDS``
   so that made-up kids cannot turn the API into a JWKS-fetching amplifier;
4. the RS256 signature;
5. ``iss`` is ``https://cognito-idp.<region>.amazonaws.com/<pool id>``; ``exp``, ``iat`` and (if
   present) ``nbf`` hold within ``LEEWAY_SECONDS``;
6. ``token_use`` is ``id`` (then ``aud`` must be the app client) or ``access`` (then
   ``client_id`` must be the app client);
7. ``sub`` is a plain identifier (it becomes part of S3 keys: ``users/<sub>/…``);
8. the time claims (``exp``, ``iat``, ``nbf``, ``auth_time``) are integers of a sane size, the
   token lives at most ``MAX_TOKEN_LIFETIME_SECONDS`` (Cognito's longest), and, if the
   deployment sets a maximum token age, was issued no longer ago than that.

On Lambda the request went through API Gateway's JWT authorizer first; the claims it validated
(``requestContext.authorizer.jwt.claims``) must name the same token (sub, iss, token_use, client,
jti), or the request is refused: a disagreement means a misrouted or tampered request.

The JWKS URL is configurable because local emulators serve it elsewhere while their tokens
still carry the AWS-style issuer.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWKError,
)

from runtime.config import Settings

ALGORITHM = "RS256"
LEEWAY_SECONDS = 30
JWKS_TTL_SECONDS = 3600
MIN_REFRESH_SECONDS = 30
JWKS_TIMEOUT_SECONDS = 5
MAX_TOKEN_CHARS = 16 * 1024
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "token_use"]
TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
MAX_TIME_CLAIM = 2**37  # ~6325 AD: far beyond any real token, small enough to stay an integer
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600  # Cognito ID/access tokens live at most one day
# Claims API Gateway's authorizer passes on that must match the token's.
GATEWAY_CLAIMS = ("sub", "iss", "token_use", "client_id", "aud", "jti")
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")


class AuthError(Exception):
    """A refusal: 401 with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class AuthUnavailable(Exception):
    """Tokens cannot be checked right now (JWKS unreachable, sign-in not configured): 503."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Principal:
    user_id: str
    token_use: str
    claims: Mapping[str, Any]


def _fetch_json(url: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read(1024 * 1024))


class JwksCache:
    """The pool's signing keys by ``kid``: cached, refreshed once on an unknown kid."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = JWKS_TTL_SECONDS,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
        timeout_seconds: float = JWKS_TIMEOUT_SECONDS,
        fetch: Callable[[str, float], dict[str, Any]] = _fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = -float("inf")
        self.fetches = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        keys = self._keys
        if keys is None or self._clock() - self._fetched_at > self.ttl_seconds:
            keys = self._refresh(force=keys is None)
        found = keys.get(kid)
        if found is None:
            # Possibly a rotation since the last fetch: look once more (rate-limited).
            keys = self._refresh(force=False)
            found = keys.get(kid)
        return found

    def _refresh(self, *, force: bool) -> dict[str, jwt.PyJWK]:
        with self._lock:
            now = self._clock()
            if (
                self._keys is not None
                and not force
                and now - self._fetched_at < self.min_refresh_seconds
            ):
                return self._keys
            try:
                document = self._fetch(self.url, self.timeout_seconds)
                keys = _signing_keys(document)
            except Exception as error:
                if self._keys is not None:  # keep serving the keys we have
                    self._fetched_at = now
                    return self._keys
                raise AuthUnavailable(
                    "Sign-in keys cannot be loaded right now; try again shortly."
                ) from error
            self.fetches += 1
            self._keys, self._fetched_at = keys, now
            return keys


def _signing_keys(document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document.get("keys", []):
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm=ALGORITHM)
        except PyJWKError:
            continue
    if not keys:
        raise ValueError("the JWKS holds no RS256 signing key")
    return keys


class CognitoVerifier:
    def __init__(
        self,
        *,
        region: str,
        user_pool_id: str,
        app_client_id: str,
        jwks_url: str | None = None,
        leeway_seconds: int = LEEWAY_SECONDS,
        max_token_age_seconds: int | None = None,
        jwks: JwksCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self.app_client_id = app_client_id
        self.leeway_seconds = leeway_seconds
        self.max_token_age_seconds = max_token_age_seconds
        self._clock = clock
        self.jwks = jwks or JwksCache(jwks_url or f"{self.issuer}/.well-known/jwks.json")

    def verify(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthError("invalid_token", "The token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except (DecodeError, InvalidTokenError):
            raise AuthError("invalid_token", "The token is malformed.") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError("invalid_token", "The token must be signed with RS256.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("invalid_token", "The token does not name its signing key.")
        key = self.jwks.key(kid)
        if key is None:
            raise AuthError("invalid_token", "The token was signed with an unknown key.")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            )
        except ExpiredSignatureError:
            raise AuthError("token_expired", "The token has expired.") from None
        except ImmatureSignatureError:
            raise AuthError("invalid_token", "The token is not valid yet.") from None
        except InvalidSignatureError:
            raise AuthError("invalid_token", "The token's signature is not valid.") from None
        except InvalidIssuerError:
            raise AuthError(
                "invalid_token", "The token was not issued by this service's user pool."
            ) from None
        except MissingRequiredClaimError:
            raise AuthError("invalid_token", "The token lacks a required claim.") from None
        except InvalidIssuedAtError:
            raise AuthError("invalid_token", "The token's issue time is not valid.") from None
        except (DecodeError, InvalidTokenError, OverflowError, TypeError, ValueError):
            raise AuthError("invalid_token", "The token is not valid.") from None
        self._check_times(claims)
        return Principal(
            user_id=self._subject(claims),
            token_use=self._check_use(claims),
            claims=claims,
        )

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        for name in TIME_CLAIMS:
            if name not in claims:
                continue
            value = claims[name]
            if type(value) is not int or not 0 <= value < MAX_TIME_CLAIM:
                raise AuthError("invalid_token", f"The token's {name} claim is not a valid time.")
        exp, iat = claims["exp"], claims["iat"]
        if exp - iat > MAX_TOKEN_LIFETIME_SECONDS + self.leeway_seconds:
            raise AuthError("invalid_token", "The token's lifetime is longer than allowed.")
        limit = self.max_token_age_seconds
        if limit is not None and self._clock() - iat > limit + self.leeway_seconds:
            raise AuthError("token_expired", "The token is older than this service accepts.")

    def _check_use(self, claims: Mapping[str, Any]) -> str:
        token_use = claims.get("token_use")
        if token_use == "id":
            audience = claims.get("aud")
            ok = audience == self.app_client_id or (
                isinstance(audience, list) and audience == [self.app_client_id]
            )
        elif token_use == "access":
            ok = claims.get("client_id") == self.app_client_id
        else:
            raise AuthError(
                "invalid_token", "Only ID and access tokens of this user pool are accepted."
            )
        if not ok:
            raise AuthError("invalid_token", "The token was issued for another application.")
        return token_use

    @staticmethod
    def _subject(claims: Mapping[str, Any]) -> str:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not _SUBJECT.match(sub):
            raise AuthError("invalid_token", "The token's subject is not valid.")
        return sub


def check_gateway_claims(claims: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    """Refuse unless the claims API Gateway's authorizer validated name the same token."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    gateway = (authorizer.get("jwt") or {}).get("claims")
    if gateway is None:
        gateway = authorizer.get("claims")  # a flattened shape some integrations produce
    if not isinstance(gateway, Mapping) or not gateway:
        raise AuthError(
            "gateway_mismatch", "The request did not come through the API's authorizer."
        )
    for name in GATEWAY_CLAIMS:
        ours, theirs = claims.get(name), gateway.get(name)
        if ours is None and theirs is None:
            continue
        if ours is None or theirs is None or _claim_text(ours) != _claim_text(theirs):
            raise AuthError(
                "gateway_mismatch",
                "The token does not match the one the API's authorizer accepted.",
            )


def _claim_text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def build_verifier(settings: Settings) -> CognitoVerifier:
    if not (settings.cognito_user_pool_id and settings.cognito_app_client_id):
        raise AuthUnavailable("Sign-in is not configured for this service.")
    return CognitoVerifier(
        region=settings.region,
        user_pool_id=settings.cognito_user_pool_id,
        app_client_id=settings.cognito_app_client_id,
        jwks_url=settings.cognito_jwks_url,
        max_token_age_seconds=settings.api_max_token_age_seconds,
    )
