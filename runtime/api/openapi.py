"""The OpenAPI document as committed (``openapi.json`` at the repository root).

``python -m runtime.api.openapi`` prints it; ``scripts/openapi.sh`` writes the committed copy;
``tests/api/test_openapi.py`` fails when the app's document differs from that copy. The document
does not depend on configuration (limits and versions are described, not embedded), so every
machine renders the same bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"


def document() -> dict[str, Any]:
    from runtime.api.app import create_app
    from runtime.config import Settings

    return create_app(Settings()).openapi()


def render(doc: dict[str, Any]) -> str:
    """Canonical text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def differences(current: dict[str, Any], committed: dict[str, Any]) -> list[str]:
    """Human-readable paths where two documents differ (empty when they are the same)."""
    found: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(found) >= 20:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    found.append(f"{where}/{key}: only in the app")
                elif key not in a:
                    found.append(f"{where}/{key}: only in the committed copy")
                else:
                    walk(a[key], b[key], f"{where}/{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}/{index}")
        elif a != b:
            found.append(f"{where}: {json.dumps(b)[:80]} (committed) != {json.dumps(a)[:80]}")

    walk(current, committed, "")
    return found


def main() -> None:
    sys.stdout.write(render(document()))


if __name__ == "__main__":
    main()
