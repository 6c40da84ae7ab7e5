"""The request envelope (pure ASGI, outside routing): request id, access log, body size limit,
per-IP rate limit, and the last-resort 500.

- Request id: API Gateway's ``requestContext.requestId`` on Lambda, a fresh one locally; it is
  put in the scope for handlers and error bodies, and echoed in the ``x-request-id`` header.
- Access log: one JSON line per request (method, route, status, duration, user, client).
- Body limit: ``Content-Length`` above the limit is refused before the app runs; a body that
  streams past it is cut off with the same 413.
- Rate limit (local mode only): per client IP, before authentication, so a flood of bad tokens
  is limited too; the per-user limit is applied after sign-in (``deps.current_user``).
- Client address: the connection's peer. ``X-Forwarded-For`` is read only when that peer is a
  configured trusted proxy (none by default), and then only its last untrusted hop counts; on
  Lambda the address is API Gateway's ``sourceIp``.
- Security headers (``runtime.api.security``) on every response, errors included.
- Any exception that escaped the app becomes the 500 error shape with the request id; the
  exception itself goes to the log only.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.context import REQUEST_ID_KEY, USER_ID_KEY
from runtime.api.errors import error_response
from runtime.api.limits import RateLimiter
from runtime.api.logs import logger
from runtime.api.security import apply as apply_security_headers

REQUEST_ID_HEADER = "x-request-id"
CLIENT_IP_KEY = "collections.client_ip"


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413)


class RequestEnvelope:
    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limit: int,
        body_limits_by_path: dict[str, int] | None = None,
        ip_limiter: RateLimiter | None = None,
        trusted_proxies: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.trusted_proxies = _networks(trusted_proxies)
        self.body_limit = body_limit
        self.body_limits_by_path = body_limits_by_path or {}
        self.ip_limiter = ip_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope[REQUEST_ID_KEY] = request_id
        scope[CLIENT_IP_KEY] = client_address(scope, self.trusted_proxies)
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = apply_security_headers(list(message.get("headers", [])))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                limit = self.body_limits_by_path.get(scope.get("path", ""), self.body_limit)
                await self.app(scope, _limited(receive, limit), send_with_id)
        except BodyTooLarge:
            if not status_holder["started"]:
                response = error_response(scope, 413)
                await response(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "unhandled error", extra={"request_id": request_id, **_request_fields(scope)}
            )
            if not status_holder["started"]:
                response = error_response(scope, 500)
                await response(scope, receive, send_with_id)
        finally:
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    **_request_fields(scope),
                    "status": status_holder["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    def _refusal(self, scope: Scope) -> Any:
        if self.ip_limiter is not None:
            retry_after = self.ip_limiter.hit(f"ip:{scope[CLIENT_IP_KEY] or 'unknown'}")
            if retry_after is not None:
                return error_response(
                    scope,
                    429,
                    "rate_limited",
                    f"Too many requests; try again in {retry_after} s.",
                    headers={"Retry-After": str(retry_after)},
                )
        declared = _content_length(scope)
        limit = self.body_limits_by_path.get(scope.get("path", ""), self.body_limit)
        if declared is not None and declared > limit:
            return error_response(
                scope, 413, "payload_too_large", f"The request body exceeds {limit} bytes."
            )
        return None


def _limited(receive: Receive, limit: int) -> Receive:
    total = 0

    async def receive_with_limit() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise BodyTooLarge()
        return message

    return receive_with_limit


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The client's address: the peer, or (only behind a trusted proxy) the nearest
    ``X-Forwarded-For`` hop that is not itself a trusted proxy."""
    client = scope.get("client")
    peer = client[0] if client else None
    if peer is None or not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for name, value in scope.get("headers", [])
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed hop: the proxy's own address is all we know
    return peer


def _request_id(scope: Scope) -> str:
    event = scope.get("aws.event")
    if isinstance(event, dict):
        request_id = (event.get("requestContext") or {}).get("requestId")
        if isinstance(request_id, str) and request_id:
            return request_id
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _request_fields(scope: Scope) -> dict[str, Any]:
    route = scope.get("route")
    fields: dict[str, Any] = {
        "method": scope.get("method"),
        "path": scope.get("path"),
        "route": getattr(route, "path_format", None) or getattr(route, "path", None),
        "user_id": scope.get(USER_ID_KEY),
        "client_ip": scope.get(CLIENT_IP_KEY),
    }
    context = scope.get("aws.context")
    if context is not None:
        fields["lambda_request_id"] = getattr(context, "aws_request_id", None)
    return fields
