"""Build inputs that must be deterministic: a value that changes on every run would rebuild the
image and update every function on every ``pulumi up``.

- git sha and build time come from the environment (CI sets them) or from the last commit, never
  from the wall clock;
- the migration set is hashed by file name and content, so the migration invocation re-runs
  exactly when a migration is added or changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

UNKNOWN = "unknown"

# Lambda architecture -> the image platform docker buildx must build (DESIGN.md rule 4).
PLATFORMS: Mapping[str, str] = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}


def build_platform(architecture: str) -> str:
    try:
        return PLATFORMS[architecture]
    except KeyError:
        raise ValueError(f"no image platform for Lambda architecture {architecture!r}") from None


@dataclass(frozen=True)
class BuildInfo:
    git_sha: str
    build_time: str

    @property
    def tag(self) -> str:
        """The image tag pushed alongside the digest (functions use the digest, never the tag)."""
        return self.git_sha[:12] if self.git_sha != UNKNOWN else "untracked"


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def build_info(repo: Path, env: Mapping[str, str] | None = None) -> BuildInfo:
    """``COLLECTIONS_GIT_SHA``/``GITHUB_SHA`` and ``COLLECTIONS_BUILD_TIME``/``SOURCE_DATE_EPOCH``
    win; otherwise the HEAD commit's sha and commit time; otherwise ``unknown``."""
    env = os.environ if env is None else env
    sha = env.get("COLLECTIONS_GIT_SHA") or env.get("GITHUB_SHA") or _git(repo, "rev-parse", "HEAD")
    when = env.get("COLLECTIONS_BUILD_TIME")
    if not when and env.get("SOURCE_DATE_EPOCH"):
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(int(env["SOURCE_DATE_EPOCH"]), tz=UTC).isoformat()
    if not when:
        when = _git(repo, "log", "-1", "--format=%cI")
    return BuildInfo(git_sha=sha or UNKNOWN, build_time=when or UNKNOWN)


def migrations_hash(versions_dir: Path) -> str:
    """sha256 over the sorted ``*.py`` migration files (name and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(versions_dir.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
