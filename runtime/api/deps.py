"""FastAPI dependencies: the signed-in user (every non-public route) and its rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.api.auth import AuthError, AuthUnavailable, Principal, check_gateway_claims
from runtime.api.context import USER_ID_KEY, api_context
from runtime.api.errors import ApiError

# Declares the security scheme in the OpenAPI document; the header is parsed below so that each
# refusal can say exactly what is wrong.
bearer = HTTPBearer(
    scheme_name="CognitoJWT",
    bearerFormat="JWT",
    description=(
        "A Cognito ID or access token of the service's user pool and app client "
        "(`Authorization: Bearer <token>`)."
    ),
    auto_error=False,
)

WWW_AUTHENTICATE = 'Bearer realm="collections"'


def _refuse(code: str, message: str) -> ApiError:
    header = WWW_AUTHENTICATE
    if code != "missing_token":
        header += ', error="invalid_token"'
    return ApiError(401, code, message, headers={"WWW-Authenticate": header})


def current_user(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    ctx = api_context(request)
    values = request.headers.getlist("authorization")
    # Two headers (or two joined with a comma, as API Gateway passes repeats on): which one a
    # proxy, a cache or this server would read differs, so none is believed.
    if len(values) > 1 or any("," in value for value in values):
        raise _refuse("invalid_authorization_header", "Send exactly one Authorization header.")
    authorization = values[0] if values else None
    if not authorization:
        raise _refuse(
            "missing_token", "This request needs a token: send 'Authorization: Bearer <token>'."
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _refuse(
            "invalid_authorization_header",
            "The Authorization header must be 'Bearer <token>'.",
        )
    try:
        principal = ctx.verifier().verify(token)
        event = request.scope.get("aws.event")
        if event is not None:
            check_gateway_claims(principal.claims, event)
    except AuthError as error:
        raise _refuse(error.code, error.message) from None
    except AuthUnavailable as error:
        raise ApiError(503, "authentication_unavailable", error.message) from None
    request.scope[USER_ID_KEY] = principal.user_id
    if ctx.user_limiter is not None:
        retry_after = ctx.user_limiter.hit(f"user:{principal.user_id}")
        if retry_after is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many requests; try again in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
