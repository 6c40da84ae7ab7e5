"""The web app's sign-in: the API signs in to the user pool on the browser's behalf and keeps
the refresh token in an HttpOnly cookie; the browser keeps the short-lived ID token in memory
only and sends it as ``Authorization: Bearer`` like every other client (so API Gateway's JWT
authorizer sees the same thing from the app as from the CLI).

- The cookie is ``HttpOnly`` (no script can read it), ``SameSite=Strict``, scoped to
  ``/auth/`` (sent to these three routes only) and ``Secure`` whenever the app is on HTTPS.
- Cross-site request forgery: every route here needs the ``X-Collections-Request`` header (a
  custom header, so a cross-site form or image cannot send it, and a cross-origin script would
  need a CORS preflight the API never grants) and, when the browser sends ``Origin``, an origin
  equal to the app's own.
- Sign-out revokes the refresh token at the user pool and clears the cookie.

These routes are public (no token: they are how a browser gets one); API Gateway throttles them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.api.context import ApiContext, api_context
from runtime.api.errors import ApiError, responses
from runtime.api.schemas import PRINTABLE

router = APIRouter(prefix="/auth", tags=["session"])
Ctx = Annotated[ApiContext, Depends(api_context)]

COOKIE_PATH = "/auth/"
CSRF_HEADER = "x-collections-request"
# Cognito's refresh tokens live 30 days by default; the pool refuses an expired one anyway.
COOKIE_MAX_AGE_S = 30 * 24 * 3600


def cookie_name(secure: bool) -> str:
    # The __Secure- prefix makes the browser refuse the cookie unless it came over HTTPS.
    return "__Secure-collections-session" if secure else "collections-session"


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[
        str, Field(min_length=1, max_length=320, pattern=PRINTABLE, description="Your email")
    ]
    password: Annotated[str, Field(min_length=1, max_length=256, pattern=PRINTABLE)]


class Session(BaseModel):
    id_token: str = Field(description="Send as `Authorization: Bearer <id_token>`; keep in memory")
    expires_in: int = Field(description="Seconds until the ID token expires; refresh before")
    username: str | None = Field(description="The signed-in user's email")


def _is_https(request: Request) -> bool:
    # The scheme the server saw: https behind API Gateway (Mangum), http on loopback locally.
    # Forwarded headers are not trusted for it.
    return request.url.scheme == "https"


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def check_same_origin(request: Request) -> None:
    """The CSRF check of every session route (see the module docstring)."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(
            403, "csrf_check_failed", f"This request needs the header '{CSRF_HEADER}: 1'."
        )
    origin = request.headers.get("origin")
    if origin is not None and origin != _origin(request):
        raise ApiError(403, "csrf_check_failed", "Requests from another site are refused.")


SameOrigin = Depends(check_same_origin)
COMMON = responses(403, 422, 429, 500, 503)


def _idp(ctx: ApiContext) -> Any:
    from runtime.adapters.signin import identity_client

    return identity_client(ctx.settings.region, ctx.settings.aws_endpoint_url)


def _client_id(ctx: ApiContext) -> str:
    client_id = ctx.settings.cognito_app_client_id
    if not client_id:
        raise ApiError(503, "authentication_unavailable", "Sign-in is not configured.")
    return client_id


def _session(ctx: ApiContext, id_token: str, expires_in: int) -> Session:
    """Checked like any token the API receives, so the app never holds one the API refuses."""
    from runtime.api.auth import AuthError, AuthUnavailable

    try:
        principal = ctx.verifier().verify(id_token)
    except AuthError as error:
        raise ApiError(401, error.code, error.message) from None
    except AuthUnavailable as error:
        raise ApiError(503, "authentication_unavailable", error.message) from None
    username = principal.claims.get("email") or principal.claims.get("cognito:username")
    return Session(id_token=id_token, expires_in=expires_in, username=username)


def _refused(error: Any) -> ApiError:
    from runtime.adapters.signin import SignInRefused

    if isinstance(error, SignInRefused):
        return ApiError(401, error.code, error.message)
    if error.throttled:
        return ApiError(429, "rate_limited", error.message)
    return ApiError(503, "signin_unavailable", error.message)


def _set_cookie(response: Response, request: Request, refresh_token: str) -> None:
    secure = _is_https(request)
    response.set_cookie(
        cookie_name(secure),
        refresh_token,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def _clear_cookie(response: Response, request: Request) -> None:
    secure = _is_https(request)
    response.delete_cookie(
        cookie_name(secure), path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )


def _refresh_cookie(request: Request) -> str | None:
    value = request.cookies.get(cookie_name(_is_https(request)))
    return value if value and len(value) <= 4096 else None


@router.post(
    "/login",
    operation_id="signIn",
    summary="Sign in with email and password (the web app); sets the session cookie",
    dependencies=[SameOrigin],
    responses={**COMMON, **responses(401)},
)
def login(body: LoginRequest, request: Request, response: Response, ctx: Ctx) -> Session:
    from runtime.adapters.signin import SignInRefused, SignInUnavailable, password_sign_in

    try:
        signed_in = password_sign_in(_idp(ctx), _client_id(ctx), body.username, body.password)
    except (SignInRefused, SignInUnavailable) as error:
        raise _refused(error) from None
    session = _session(ctx, signed_in.id_token, signed_in.expires_in)
    if signed_in.refresh_token:
        _set_cookie(response, request, signed_in.refresh_token)
    response.headers["Cache-Control"] = "no-store"
    return session


@router.post(
    "/refresh",
    operation_id="refreshSession",
    summary="A new ID token from the session cookie (after a reload, or before expiry)",
    dependencies=[SameOrigin],
    responses={**COMMON, **responses(401)},
)
def refresh_session(request: Request, response: Response, ctx: Ctx) -> Session:
    from runtime.adapters.signin import SignInRefused, SignInUnavailable, refresh

    token = _refresh_cookie(request)
    if token is None:
        raise ApiError(401, "not_signed_in", "You are not signed in.")
    try:
        signed_in = refresh(_idp(ctx), _client_id(ctx), token)
    except SignInRefused as error:
        failure = _refused(error)
        raise ApiError(
            401, failure.code, failure.message, headers={"Set-Cookie": _expired_cookie(request)}
        ) from None
    except SignInUnavailable as error:
        raise _refused(error) from None
    response.headers["Cache-Control"] = "no-store"
    return _session(ctx, signed_in.id_token, signed_in.expires_in)


def _expired_cookie(request: Request) -> str:
    probe = Response()
    _clear_cookie(probe, request)
    return probe.headers["set-cookie"]


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    operation_id="signOut",
    summary="Sign out: revoke the session at the user pool and clear the cookie",
    dependencies=[SameOrigin],
    responses={204: {"description": "Signed out"}, **COMMON},
)
def logout(request: Request, ctx: Ctx) -> Response:
    from runtime.adapters.signin import revoke

    token = _refresh_cookie(request)
    if token is not None and ctx.settings.cognito_app_client_id:
        revoke(_idp(ctx), ctx.settings.cognito_app_client_id, token)
    response = Response(status_code=204)
    _clear_cookie(response, request)
    return response
