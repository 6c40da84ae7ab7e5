"""Opaque, authenticated page cursors: ``base64url(json) "." mac``.

A cursor names a position in one user's own listing or search, so forging one grants nothing
by itself; the MAC still matters: it makes every edited, truncated or foreign cursor a clean
``InvalidCursor`` (a 400) instead of a query run on attacker-chosen values. The MAC key is a
per-deployment secret (an SSM SecureString on AWS and in local mode, installed by the API with
``use_key``); without one, each process makes a random key of its own, so a key is never a
constant of the source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any

MAX_CURSOR_CHARS = 2048
_MAC_BYTES = 16


class InvalidCursor(ValueError):
    """The cursor was not issued for this listing (altered, truncated, foreign, or malformed)."""


_lock = threading.Lock()
_key_source: Callable[[], bytes] | None = None
_process_key: bytes | None = None


def use_key(source: Callable[[], bytes | str] | None) -> None:
    """Install where the MAC key comes from (called once by the composition root); ``None``
    goes back to a random key of this process."""
    global _key_source

    def derived() -> bytes:
        assert source is not None
        raw = source()
        material = raw.encode() if isinstance(raw, str) else raw
        if len(material) < 16:
            raise ValueError("the cursor key is too short")
        return hashlib.sha256(b"collections.cursor\0" + material).digest()

    with _lock:
        _key_source = derived if source is not None else None


def _key() -> bytes:
    global _process_key
    source = _key_source
    if source is not None:
        return source()
    with _lock:
        if _process_key is None:
            _process_key = secrets.token_bytes(32)
        return _process_key


def mac(payload: bytes) -> str:
    return hashlib.blake2b(payload, key=_key(), digest_size=_MAC_BYTES).hexdigest()


def seal(data: dict[str, Any]) -> str:
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode()
    token = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{token}.{mac(payload)}"


def unseal(cursor: str) -> dict[str, Any]:
    """The cursor's data if this deployment issued it; ``InvalidCursor`` for anything else."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("malformed cursor")
    token, dot, tag = cursor.partition(".")
    if not dot or not token.isascii() or not tag.isascii():
        raise InvalidCursor("malformed cursor")
    try:
        payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("malformed cursor") from None
    if not hmac.compare_digest(tag.encode(), mac(payload).encode()):
        raise InvalidCursor("cursor does not verify")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        raise InvalidCursor("malformed cursor") from None
    if not isinstance(data, dict):
        raise InvalidCursor("malformed cursor")
    return data


def subject_tag(*parts: object) -> str:
    """A short digest binding a cursor to its listing (user, filters); not secret."""
    material = json.dumps([str(p) if p is not None else None for p in parts])
    return hashlib.blake2b(material.encode(), digest_size=12).hexdigest()
