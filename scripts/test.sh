#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs pytest.
# PostgreSQL + pgvector, the AWS emulator and the fake model APIs are started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
uv run --frozen --no-sync ruff check .
uv run --frozen --no-sync pytest "$@"
