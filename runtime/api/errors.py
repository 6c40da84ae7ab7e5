"""One error shape for every failure: ``{"error": {"code", "message", "request_id"}}``.

Codes are stable, lower-snake-case words a client can branch on; messages are sentences for
people and never carry internals (no exception text, SQL, keys or stack traces). Unexpected
failures are logged with the request id, which the 500 body repeats so a report can be matched
to its log line.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.api.context import request_id_of

CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}

MESSAGES_BY_STATUS = {
    400: "The request is not valid.",
    401: "Authentication is required.",
    403: "This is not allowed.",
    404: "Not found.",
    405: "This method is not allowed on this path.",
    409: "The request conflicts with the current state of the resource.",
    413: "The request body is too large.",
    415: "This media type is not supported.",
    422: "The request is not valid.",
    429: "Too many requests; slow down.",
    500: "Something went wrong on our side. Quote the request id if you report it.",
    503: "The service is temporarily unavailable; try again shortly.",
}

RESPONSE_DESCRIPTIONS = {
    400: "Bad request (e.g. a cursor that this listing did not issue)",
    401: "Missing, malformed, expired or otherwise invalid token",
    403: "Refused: a session request without the same-origin header, or from another site",
    404: "No such item for this user",
    409: (
        "The item is not in a state that allows this; or (`duplicate_item`) the same image "
        "is already in the caller's collection, and `item_id` names that item"
    ),
    413: "Request body or declared upload size too large",
    415: "The uploaded file is not a supported image type",
    422: "The request does not match the schema",
    429: "Rate limit exceeded (local mode); see Retry-After",
    500: "Unexpected error; the body carries the request id",
    503: "A dependency (database, storage, events, sign-in keys) is unavailable",
}


class FieldError(BaseModel):
    location: list[str | int] = Field(description='Where the problem is, e.g. ["body", "size"]')
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_token`")
    message: str = Field(description="What went wrong, for people")
    request_id: str | None = Field(default=None, description="Echo of the x-request-id header")
    details: list[FieldError] | None = Field(
        default=None, description="Validation problems, one per field (422 only)"
    )
    item_id: str | None = Field(
        default=None,
        description="The existing item with the same bytes (409 `duplicate_item` only)",
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Raised by routes and dependencies; rendered as the error shape with its status."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        item_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code or CODES_BY_STATUS.get(status, "error")
        self.message = message or MESSAGES_BY_STATUS.get(status, "The request failed.")
        self.headers = headers
        self.item_id = item_id
        super().__init__(f"{status} {self.code}")


def error_payload(
    status: int,
    code: str | None = None,
    message: str | None = None,
    *,
    request_id: str | None = None,
    details: list[FieldError] | None = None,
    item_id: str | None = None,
) -> dict[str, Any]:
    body = ErrorBody(
        code=code or CODES_BY_STATUS.get(status, "error"),
        message=message or MESSAGES_BY_STATUS.get(status, "The request failed."),
        request_id=request_id,
        details=details,
        item_id=item_id,
    )
    return {"error": body.model_dump(exclude_none=True)}


def error_response(
    request_or_scope: Request | dict[str, Any] | None,
    status: int,
    code: str | None = None,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    details: list[FieldError] | None = None,
    item_id: str | None = None,
) -> JSONResponse:
    scope = request_or_scope.scope if isinstance(request_or_scope, Request) else request_or_scope
    request_id = request_id_of(scope) if scope is not None else None
    return JSONResponse(
        error_payload(
            status, code, message, request_id=request_id, details=details, item_id=item_id
        ),
        status_code=status,
        headers=headers,
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses, all with the error shape."""
    return {
        status: {"model": ErrorResponse, "description": RESPONSE_DESCRIPTIONS[status]}
        for status in statuses
    }


def _location(loc: Any) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        request, exc.status, exc.code, exc.message, headers=exc.headers, item_id=exc.item_id
    )


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first
    route that matched the path)."""
    from starlette.routing import Match

    allowed = []
    for method in METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    if status == 400:
        # FastAPI's only 400: a body it could not parse (e.g. not UTF-8). Like malformed JSON,
        # that is a request that does not match the schema.
        return error_response(request, 422, "invalid_body", "The request body could not be parsed.")
    # Starlette's own details are fixed phrases ("Not Found", "Method Not Allowed"); ours
    # replace them so every message reads the same way.
    return error_response(request, status, headers=headers or None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        FieldError(location=_location(err.get("loc", ())), message=str(err.get("msg", "")))
        for err in exc.errors()
    ]
    return error_response(
        request,
        422,
        "validation_error",
        "The request does not match the API schema; see details.",
        details=details,
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    from runtime.api.logs import logger

    logger.warning(
        "database unavailable",
        extra={"request_id": request_id_of(request.scope), "error": type(exc).__name__},
    )
    return error_response(
        request, 503, "database_unavailable", "The database is not reachable; try again shortly."
    )


async def _dependency_unavailable(request: Request, exc: Exception) -> JSONResponse:
    from runtime.api.logs import logger

    logger.warning(
        "dependency unavailable",
        extra={"request_id": request_id_of(request.scope), "error": type(exc).__name__},
    )
    return error_response(
        request,
        503,
        "dependency_unavailable",
        "A service this request needs is not reachable; try again shortly.",
    )


def install_error_handlers(app: FastAPI) -> None:
    from runtime.domain.errors import TransientError

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(TransientError, _dependency_unavailable)


def install_dependency_error_handlers(app: FastAPI) -> None:
    """The database's and the AWS SDK's errors (a 503). Their classes live in SQLAlchemy and
    botocore, so these are registered when the first request builds the middleware stack (see
    ``runtime.api.app.App``), not when the app is built: a cold start loads neither."""
    from botocore.exceptions import BotoCoreError, ClientError
    from sqlalchemy.exc import InterfaceError, OperationalError

    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(BotoCoreError, _dependency_unavailable)
    app.add_exception_handler(ClientError, _dependency_unavailable)
