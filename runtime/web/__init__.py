"""The web app: plain HTML, CSS and JavaScript modules, served by the API at ``/``.

No build step: the browser runs the files in ``static/`` as they are. They are fingerprinted
here instead, once per process: every asset is served under ``/assets/<version>/``, where
``version`` is a digest of all of them, with a year-long immutable cache; relative imports
between the modules stay inside that folder, so one changed byte anywhere gives every file a
new URL and nothing stale is ever mixed with something new. ``index.html`` (never cached) names
the current folder.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
INDEX = HERE / "index.html"

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


@dataclass(frozen=True)
class WebAssets:
    version: str
    files: dict[str, Asset]
    index_template: str

    def index(self, base: str, config: str) -> str:
        """``index.html`` with the assets' folder and the (HTML-escaped) config filled in."""
        return self.index_template.replace("{{assets}}", f"{base}/{self.version}").replace(
            "{{config}}", config
        )


def load(static: Path = STATIC, index: Path = INDEX) -> WebAssets:
    files: dict[str, Asset] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in static.rglob("*") if p.is_file()):
        name = path.relative_to(static).as_posix()
        body = path.read_bytes()
        media_type = MEDIA_TYPES.get(path.suffix) or (
            mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        files[name] = Asset(body, media_type)
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    return WebAssets(digest.hexdigest()[:16], files, index.read_text(encoding="utf-8"))


@cache
def assets() -> WebAssets:
    return load()
