"""An SDK client made on first use and shared by the threads of a process.

Creating a client reads its API key (an SSM SecureString on AWS), so it is deferred until a call
needs it, made once however many threads ask at the same time, and forgotten after an
authentication failure so that the next call reads a rotated key again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Client = TypeVar("Client")


class LazyClient(Generic[Client]):
    def __init__(self, create: Callable[[], Client], client: Client | None = None) -> None:
        """``create`` makes the client (and raises the provider's own errors when it cannot);
        ``client``, if given, is used as it is (tests)."""
        self._create = create
        self._client = client
        self._lock = threading.Lock()

    def get(self) -> Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._create()
            return self._client

    def drop(self) -> None:
        """Forget the client (and so its key): the next ``get`` creates a new one."""
        with self._lock:
            self._client = None
