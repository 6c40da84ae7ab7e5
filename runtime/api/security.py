"""The response header policy, in one place: what every response carries, and the Content
Security Policy of each kind of response.

Every response gets ``SECURITY_HEADERS`` and, unless it set its own, ``Cache-Control:
no-store`` (answers are per user) and the strict ``API_CSP`` (JSON needs no sources at all).
An HTML page sets its own ``Content-Security-Policy`` built with ``page_csp``: its own origin
for scripts and styles, the inline scripts it carries named by hash, and whatever else it
declares (e.g. the storage origin its thumbnails come from); the envelope keeps a response's
own policy and adds the rest.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

CSP_HEADER = "content-security-policy"
CACHE_HEADER = "cache-control"

SECURITY_HEADERS: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
DEFAULT_CACHE_CONTROL = "no-store"
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def script_hash(source: str) -> str:
    """The CSP source expression that allows exactly this inline script."""
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def page_csp(
    *,
    script_hashes: Iterable[str] = (),
    img_src: Iterable[str] = (),
    connect_src: Iterable[str] = (),
    style_inline: bool = False,
) -> str:
    """The policy of an HTML page served by the API: same-origin scripts, styles, images and
    fetches, plus what the page names; no framing, no plugins, no foreign form targets."""
    scripts = " ".join(["'self'", *script_hashes])
    styles = "'self' 'unsafe-inline'" if style_inline else "'self'"
    images = " ".join(["'self'", "data:", *img_src])
    connect = " ".join(["'self'", *connect_src])
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; img-src {images}; "
        f"font-src 'self'; connect-src {connect}; manifest-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )


def apply(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` (ASGI form) with the policy added; a response's own CSP and Cache-Control
    are kept, anything else it set under a policy header name is replaced."""
    present = {name.lower() for name, _ in headers}
    policy = {name.encode(): value.encode() for name, value in SECURITY_HEADERS.items()}
    out = [(name, value) for name, value in headers if name.lower() not in policy]
    out.extend(policy.items())
    if CSP_HEADER.encode() not in present:
        out.append((CSP_HEADER.encode(), API_CSP.encode()))
    if CACHE_HEADER.encode() not in present:
        out.append((CACHE_HEADER.encode(), DEFAULT_CACHE_CONTROL.encode()))
    return out
