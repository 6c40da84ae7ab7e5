"""The committed OpenAPI document (openapi.json) is exactly the app's: a route or model change
without ``scripts/openapi.sh`` fails here."""

from __future__ import annotations

import json

import pytest

from runtime.api.app import create_app
from runtime.api.openapi import COMMITTED, differences, document, render
from runtime.api.routers import items
from runtime.config import Settings

STALE = "openapi.json differs from the app; run scripts/openapi.sh and commit the result:\n"


def canonical(doc: dict) -> dict:
    """Parsed back from the canonical text: what the committed file holds, type for type."""
    return json.loads(render(doc))


def committed() -> dict:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_committed_openapi_matches_the_app() -> None:
    current = canonical(document())
    problems = differences(current, committed())
    assert not problems, STALE + "\n".join(problems)
    assert current == committed(), STALE
    assert COMMITTED.read_text(encoding="utf-8") == render(current), STALE + "(formatting)"


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_the_check_catches_route_changes() -> None:
    """The comparison is not vacuous: an added route, a moved path and a changed parameter
    each make it fail."""
    app = create_app(Settings())

    @app.get("/items/{item_id}/share", tags=["items"])
    def share(item_id: str) -> dict:
        return {}

    found = differences(canonical(app.openapi()), committed())
    assert "/paths//items/{item_id}/share: only in the app" in found

    app = create_app(Settings())
    app.include_router(items.router, prefix="/v2")  # the same routes under another path
    found = differences(canonical(app.openapi()), committed())
    assert "/paths//v2/items: only in the app" in found

    app = create_app(Settings())
    doc = canonical(app.openapi())
    doc["paths"]["/search"]["get"]["parameters"][0]["schema"]["maxLength"] = 2000
    assert differences(doc, committed()) and doc != committed()
