#!/usr/bin/env bash
# Starts the local product (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec uv run --frozen --no-sync collections dev "$@"
