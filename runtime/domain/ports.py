"""What the domain needs from the outside world, as small interfaces (S3 and EventBridge on AWS,
the local emulator's endpoints in local mode)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from runtime.events import BusEvent


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    last_modified: datetime


class BlobStore(Protocol):
    bucket: str

    def get(self, key: str) -> bytes: ...

    def read(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and the ETag of exactly those bytes."""
        ...

    def etag(self, key: str) -> str | None:
        """The current object's ETag (None when there is no object)."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def delete(self, keys: list[str]) -> None: ...

    def list(self, prefix: str) -> Iterator[StoredObject]: ...


class EventPublisher(Protocol):
    def publish(self, event: BusEvent) -> None: ...
