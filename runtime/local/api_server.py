"""The HTTP server of local mode: uvicorn, configured so that what the API promises holds.

- ``X-Forwarded-For``/``X-Forwarded-Proto`` are not applied by the server (uvicorn trusts them
  from loopback by default, and here every client is on loopback); the API reads them itself,
  only from ``COLLECTIONS_TRUSTED_PROXIES`` (none by default).
- No ``server`` header.
- Every connection sends small writes at once (``TCP_NODELAY``). asyncio sets it only on sockets
  created with ``IPPROTO_TCP``; the listening socket uvicorn binds for ``--workers`` has protocol
  0, and without the option a keep-alive response's body waited ~40 ms for the client's delayed
  ACK of its headers.
- A request that is not valid HTTP gets the API's JSON error shape and security headers, not
  uvicorn's plain-text 400.

- ``--workers N``: N processes share the listening socket (uvicorn's supervisor), each with
  its own app, database pool and query embedder, so requests use up to N CPUs; the API's rate
  limit is counted per process.

``python -m runtime.local.api_server --host 127.0.0.1 --port 8000 [--workers N]``
(``collections dev`` runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import uuid
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from runtime.api.errors import error_payload
from runtime.api.middleware import REQUEST_ID_HEADER
from runtime.api.security import apply as apply_security_headers

APP_FACTORY = "runtime.api.app:create_app"


class StrictH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        connection = transport.get_extra_info("socket")
        if connection is not None and connection.family in (socket.AF_INET, socket.AF_INET6):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def send_400_response(self, msg: str) -> None:  # uvicorn's hook for unparseable requests
        request_id = uuid.uuid4().hex
        body = json.dumps(
            error_payload(
                400,
                "malformed_request",
                "The request is not valid HTTP.",
                request_id=request_id,
            )
        ).encode()
        headers = apply_security_headers(
            [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
        )
        headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def server_config(
    app: Any, *, host: str, port: int | None = None, **options: Any
) -> uvicorn.Config:
    """uvicorn's configuration for the API (``port`` None: the caller passes sockets)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port or 0,
        http=StrictH11Protocol,
        proxy_headers=False,
        server_header=False,
        **options,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.workers > 1:
        # Each worker process imports the app by name and builds it (nothing connects before
        # the first request); the supervisor restarts a worker that dies.
        config = server_config(
            APP_FACTORY,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    from runtime.api.app import create_app

    config = server_config(create_app(), host=args.host, port=args.port, log_level=args.log_level)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
