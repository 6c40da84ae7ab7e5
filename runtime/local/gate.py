"""The enforcing front of the local AWS emulator: what AWS checks and the emulator does not.

moto answers every request it can parse: unsigned, signed with any key, presigned URLs with a
wrong signature or long expired, POST uploads that break their policy. This WSGI layer sits in
front of it on the emulator's only listening socket and lets a request through only if AWS
would have:

- a request signed (SigV4, ``Authorization`` header) with local mode's own credentials, within
  15 minutes of its ``X-Amz-Date``; for S3 a declared payload hash must match the body;
- a presigned URL (SigV4 query parameters) with a valid signature, not expired, at most 7 days;
- a browser POST upload whose policy is signed with the local credentials, not expired, and
  whose every condition holds: each form field is named by a condition (as S3 requires), the
  bucket, the exact ``key``, ``Content-Type``, and the file size within ``content-length-range``;
- the Cognito calls AWS leaves unsigned (sign-in with a password or refresh token, the
  user's own operations with an access token) and the public JWKS/OpenID documents;
- CORS preflights (the bucket's CORS rules answer them).

Everything else, anonymous listing and reads included, is a 403; moto's own control API
(``/moto-api``: reset, state dump) is never reachable.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import time
from base64 import b64decode
from calendar import timegm
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
CLOCK_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
MAX_BODY_BYTES = 64 * 1024 * 1024
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
PUBLIC_COGNITO_ACTIONS = frozenset(
    {
        "InitiateAuth",
        "RespondToAuthChallenge",
        "GetTokensFromRefreshToken",
        "RevokeToken",
        "SignUp",
        "ConfirmSignUp",
        "ResendConfirmationCode",
        "ForgotPassword",
        "ConfirmForgotPassword",
        "GetUser",
        "ChangePassword",
        "GlobalSignOut",
        "UpdateUserAttributes",
        "DeleteUser",
    }
)
_PUBLIC_PATHS = re.compile(r"^/[\w-]+/\.well-known/(jwks\.json|openid-configuration)$")
_AUTH_FIELDS = re.compile(r"(\w+)=([^,\s]+)")
# Form fields S3 does not require a policy condition for.
_UNCONDITIONED_FIELDS = {"x-amz-signature", "file", "policy"}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Refused(Exception):
    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def _amz_time(stamp: str) -> float:
    try:
        return float(timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
    except (ValueError, TypeError):
        raise Refused("AccessDenied", "X-Amz-Date is not a valid date.") from None


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _canonical_query(raw: str, *, drop: str | None = None) -> str:
    pairs = []
    for part in raw.split("&") if raw else []:
        name, _, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if name == drop:
            continue
        pairs.append((_encode(name), _encode(value)))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _header(environ: Environ, name: str) -> str | None:
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return environ.get(key) or None
    return environ.get(f"HTTP_{key}")


def _raw_path_and_query(environ: Environ) -> tuple[str, str]:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path, _, query = raw.partition("?")
        return path, query
    return quote(environ.get("PATH_INFO", "/")), environ.get("QUERY_STRING", "")


class Gate:
    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        credentials: Credentials,
        *,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.clock = clock
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = self._read_body(environ)
            self.check(environ, body)
        except Refused as refusal:
            return self._refuse(environ, refusal, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    # -- the decision ---------------------------------------------------------------------------

    def check(self, environ: Environ, body: bytes) -> None:
        method = environ.get("REQUEST_METHOD", "GET")
        path, query = _raw_path_and_query(environ)
        if unquote(path).startswith("/moto-api"):
            raise Refused("AccessDenied", "The emulator's control API is not available.")
        authorization = _header(environ, "authorization")
        if authorization:
            self._check_header_signature(environ, method, path, query, body, authorization)
            return
        if "X-Amz-Signature=" in query or "X-Amz-Credential=" in query:
            self._check_presigned(environ, method, path, query)
            return
        if method == "OPTIONS":
            return  # a CORS preflight carries no credentials anywhere
        if method == "GET" and _PUBLIC_PATHS.match(path):
            return
        target = _header(environ, "x-amz-target") or ""
        service, _, action = target.partition(".")
        if service == "AWSCognitoIdentityProviderService" and action in PUBLIC_COGNITO_ACTIONS:
            return
        content_type = _header(environ, "content-type") or ""
        if method == "POST" and content_type.lower().startswith("multipart/form-data"):
            self._check_post_policy(environ, path, body)
            return
        raise Refused("AccessDenied", "Anonymous access is not allowed; sign the request.")

    def _check_key(self, credential: str) -> tuple[str, str, str, str]:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise Refused("AuthorizationQueryParametersError", "The credential is malformed.", 400)
        key_id, date, region, service, _ = parts
        if not hmac.compare_digest(key_id, self.credentials.access_key_id):
            raise Refused("InvalidAccessKeyId", "The access key is not one of this installation.")
        return key_id, date, region, service

    def _expected(
        self, string_to_sign_parts: tuple[str, str, str], date: str, region: str, service: str
    ) -> str:
        stamp, scope, canonical = string_to_sign_parts
        string_to_sign = "\n".join(
            [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _signing_key(self.credentials.secret_access_key, date, region, service)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _canonical_headers(environ: Environ, signed: list[str]) -> str:
        if "host" not in signed:
            raise Refused("AccessDenied", "The signature must cover the Host header.")
        lines = []
        for name in signed:
            value = _header(environ, name)
            if value is None:
                raise Refused("SignatureDoesNotMatch", f"Signed header {name} is missing.")
            lines.append(f"{name}:{' '.join(value.split())}\n")
        return "".join(lines)

    @staticmethod
    def _canonical_uri(path: str, service: str) -> str:
        # S3 signs the path as sent; the other services sign it URI-encoded once more.
        return path if service == "s3" else quote(path, safe="/~")

    def _check_header_signature(
        self, environ: Environ, method: str, path: str, query: str, body: bytes, header: str
    ) -> None:
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise Refused("AccessDenied", "Only AWS Signature Version 4 is accepted.")
        fields = dict(_AUTH_FIELDS.findall(rest))
        if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
            raise Refused("AccessDenied", "The Authorization header is malformed.")
        _, date, region, service = self._check_key(fields["Credential"])
        stamp = _header(environ, "x-amz-date") or ""
        if abs(self.clock() - _amz_time(stamp)) > CLOCK_SKEW_SECONDS or stamp[:8] != date:
            raise Refused("RequestTimeTooSkewed", "The request time is too far from now.")
        signed = fields["SignedHeaders"].split(";")
        if service == "s3":
            payload = _header(environ, "x-amz-content-sha256") or ""
            if payload != UNSIGNED_PAYLOAD and not hmac.compare_digest(
                payload, hashlib.sha256(body).hexdigest()
            ):
                raise Refused("XAmzContentSHA256Mismatch", "The body does not match its hash.", 400)
        else:
            payload = hashlib.sha256(body).hexdigest()
        canonical = "\n".join(
            [
                method,
                self._canonical_uri(path, service),
                _canonical_query(query),
                self._canonical_headers(environ, signed),
                ";".join(signed),
                payload,
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        expected = self._expected((stamp, scope, canonical), date, region, service)
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise Refused("SignatureDoesNotMatch", "The request signature does not match.")

    def _check_presigned(self, environ: Environ, method: str, path: str, query: str) -> None:
        params: dict[str, str] = {}
        for part in query.split("&"):
            name, _, value = part.partition("=")
            params[unquote(name)] = unquote(value)
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            raise Refused("AccessDenied", "Only AWS Signature Version 4 is accepted.")
        _, date, region, service = self._check_key(params.get("X-Amz-Credential", ""))
        stamp = params.get("X-Amz-Date", "")
        signed_at = _amz_time(stamp)
        try:
            expires = int(params.get("X-Amz-Expires", ""))
        except ValueError:
            raise Refused("AccessDenied", "X-Amz-Expires is missing or not a number.") from None
        if not 1 <= expires <= MAX_PRESIGN_SECONDS or stamp[:8] != date:
            raise Refused(
                "AuthorizationQueryParametersError", "X-Amz-Expires is out of range.", 400
            )
        now = self.clock()
        if now > signed_at + expires:
            raise Refused("AccessDenied", "Request has expired.")
        if signed_at > now + CLOCK_SKEW_SECONDS:
            raise Refused("AccessDenied", "The URL was signed in the future.")
        signed = params.get("X-Amz-SignedHeaders", "").split(";")
        canonical = "\n".join(
            [
                method,
                self._canonical_uri(path, service),
                _canonical_query(query, drop="X-Amz-Signature"),
                self._canonical_headers(environ, signed),
                ";".join(signed),
                UNSIGNED_PAYLOAD if service == "s3" else hashlib.sha256(b"").hexdigest(),
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        expected = self._expected((stamp, scope, canonical), date, region, service)
        if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
            raise Refused("SignatureDoesNotMatch", "The request signature does not match.")

    def _check_post_policy(self, environ: Environ, path: str, body: bytes) -> None:
        from werkzeug.formparser import parse_form_data

        parsed = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        parsed["CONTENT_LENGTH"] = str(len(body))
        _, form, files = parse_form_data(parsed)
        fields = {name.lower(): value for name, value in form.items()}
        upload = files.get("file")
        if upload is None:
            raise Refused("InvalidArgument", "POST requires exactly one file upload.", 400)
        size = len(upload.read())
        policy_b64 = fields.get("policy")
        if not policy_b64:
            raise Refused("AccessDenied", "Anonymous uploads are not allowed: no policy.")
        if fields.get("x-amz-algorithm") != ALGORITHM:
            raise Refused("AccessDenied", "Only AWS Signature Version 4 is accepted.")
        _, date, region, service = self._check_key(fields.get("x-amz-credential", ""))
        key = _signing_key(self.credentials.secret_access_key, date, region, service)
        expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
            raise Refused("SignatureDoesNotMatch", "The policy signature does not match.")
        try:
            policy = json.loads(b64decode(policy_b64, validate=True))
            expiration = time.strptime(policy["expiration"][:19], "%Y-%m-%dT%H:%M:%S")
            conditions = policy["conditions"]
            assert isinstance(conditions, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise Refused("InvalidPolicyDocument", "The policy is malformed.", 400) from None
        if self.clock() > timegm(expiration):
            raise Refused("AccessDenied", "Invalid according to Policy: Policy expired.")
        bucket = unquote(path).strip("/").split("/", 1)[0]
        values = {**fields, "bucket": bucket}
        covered = _check_conditions(conditions, values, size)
        uncovered = {
            name
            for name in fields
            if name not in _UNCONDITIONED_FIELDS
            and not name.startswith("x-ignore-")
            and name not in covered
        }
        if uncovered:
            raise Refused(
                "AccessDenied",
                "Invalid according to Policy: Extra input fields: " + ", ".join(sorted(uncovered)),
            )

    # -- the refusal ----------------------------------------------------------------------------

    @staticmethod
    def _refuse(
        environ: Environ, refusal: Refused, start_response: StartResponse
    ) -> Iterable[bytes]:
        reason = {400: "Bad Request", 403: "Forbidden", 413: "Payload Too Large"}
        status = f"{refusal.status} {reason.get(refusal.status, 'Error')}"
        if _header(environ, "x-amz-target"):
            body = json.dumps({"__type": refusal.code, "message": refusal.message}).encode()
            headers = [("Content-Type", "application/x-amz-json-1.1")]
        else:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                f"{refusal.code}</Code><Message>{refusal.message}</Message></Error>"
            ).encode()
            headers = [("Content-Type", "application/xml")]
        headers += [("Content-Length", str(len(body))), ("x-amzn-ErrorType", refusal.code)]
        start_response(status, headers)
        return [body]

    def _read_body(self, environ: Environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise Refused("InvalidArgument", "Content-Length is not a number.", 400) from None
        if length > self.max_body_bytes:
            raise Refused("EntityTooLarge", "The request body is too large.", 413)
        if length <= 0:
            return b""
        return environ["wsgi.input"].read(length)


def _check_conditions(conditions: list[Any], values: dict[str, str], size: int) -> set[str]:
    """Check every condition of a POST policy; return the field names they cover."""
    covered: set[str] = set()
    for condition in conditions:
        if isinstance(condition, dict) and len(condition) == 1:
            ((name, expected),) = condition.items()
            name = name.lower()
            if values.get(name) != expected:
                raise Refused("AccessDenied", f"Invalid according to Policy: {name} differs.")
            covered.add(name)
        elif isinstance(condition, list) and len(condition) == 3:
            operator, subject, operand = condition
            if operator == "content-length-range":
                low, high = int(subject), int(operand)
                if not low <= size <= high:
                    raise Refused(
                        "EntityTooLarge" if size > high else "EntityTooSmall",
                        "Your proposed upload is outside the policy's size range.",
                        400,
                    )
                continue
            if not isinstance(subject, str) or not subject.startswith("$"):
                raise Refused("InvalidPolicyDocument", "A policy condition is malformed.", 400)
            name = subject[1:].lower()
            actual = values.get(name, "")
            if operator == "eq" and actual != operand:
                raise Refused("AccessDenied", f"Invalid according to Policy: {name} differs.")
            if operator == "starts-with" and not actual.startswith(str(operand)):
                raise Refused("AccessDenied", f"Invalid according to Policy: {name} differs.")
            if operator not in ("eq", "starts-with"):
                raise Refused("InvalidPolicyDocument", "A policy condition is malformed.", 400)
            covered.add(name)
        else:
            raise Refused("InvalidPolicyDocument", "A policy condition is malformed.", 400)
    return covered
