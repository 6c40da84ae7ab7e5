#!/usr/bin/env bash
# Regenerates the committed OpenAPI document (openapi.json at the repository root) from the app.
# Run it after changing a route or a model, and commit the result: tests/api/test_api_openapi.py
# fails while the committed copy and the app differ. `--check` only compares (exit 1 on drift).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--check" ]; then
  ./.venv/bin/python -m runtime.api.openapi | diff -u openapi.json - \
    && echo "openapi.json is up to date"
else
  ./.venv/bin/python -m runtime.api.openapi > openapi.json.tmp
  mv openapi.json.tmp openapi.json
  echo "wrote openapi.json"
fi
