#!/usr/bin/env bash
# Starts the local product (see README): API on http://127.0.0.1:8000, data in .local/ (or
# --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/collections dev "$@"
