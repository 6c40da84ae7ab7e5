"""Items through the real app over HTTP, on PostgreSQL and the AWS emulator, with the pipeline
run by the event pump: upload (presigned or direct) -> ready -> found by search; list, get,
re-analyze, analysis versions, delete."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from runtime.db.models import Analysis, Item, SearchDocument
from runtime.db.session import session_scope
from runtime.local.cloud import EventPump
from tests.api.conftest import Api, User
from tests.api.support import assert_error, upload_through_api
from tests.corpus import sample_jpeg, sample_png
from tests.fakes.model_server import DEFAULT_ANALYSIS, FakeModelServer

MAX_UPLOAD = 25 * 1024 * 1024


def create_upload(api: Api, user: User, **body: object) -> httpx.Response:
    payload = {"file_name": "beach.jpg", "content_type": "image/jpeg", "size": 1234, **body}
    return api.http.post("/items", headers=user.headers(), json=payload)


def policy_of(fields: dict[str, str]) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def test_presigned_post_is_restricted_to_the_key_the_type_and_the_size(
    api: Api, alice: User
) -> None:
    response = create_upload(api, alice, file_name="screen.png", content_type="image/png")
    assert response.status_code == 201, response.text
    body = response.json()
    item, upload = body["item"], body["upload"]
    key = f"users/{alice.sub}/items/{item['id']}/original"
    assert item["status"] == "uploading" and item["file_name"] == "screen.png"
    assert item["content_type"] == "image/png" and item["size"] == 1234

    assert upload["method"] == "POST" and upload["max_size"] == MAX_UPLOAD
    fields = upload["fields"]
    assert fields["key"] == key and fields["Content-Type"] == "image/png"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256" and fields["x-amz-signature"]
    policy = policy_of(fields)
    conditions = policy["conditions"]
    assert {"bucket": api.cloud.bucket} in conditions
    assert {"key": key} in conditions  # the exact key: no starts-with
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 1, MAX_UPLOAD] in conditions
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert now + timedelta(minutes=14) < expiration <= now + timedelta(minutes=16)
    assert abs(datetime.fromisoformat(upload["expires_at"]) - expiration) < timedelta(seconds=5)


def test_create_upload_refusals(api: Api, alice: User) -> None:
    error = assert_error(create_upload(api, alice, content_type="text/html"), 422)
    assert error["details"][0]["location"] == ["body", "content_type"]
    assert_error(create_upload(api, alice, size=0), 422, "validation_error")
    assert_error(create_upload(api, alice, size=MAX_UPLOAD + 1), 413, "upload_too_large")
    assert create_upload(api, alice, size=MAX_UPLOAD).status_code == 201
    assert_error(create_upload(api, alice, file_name=""), 422)
    assert_error(create_upload(api, alice, file_name="a\x00b.jpg"), 422)
    assert_error(create_upload(api, alice, owner="someone-else"), 422)  # unknown fields refused
    response = api.http.post(
        "/items",
        headers={**alice.headers(), "content-type": "application/json"},
        content=b"{not json",
    )
    assert_error(response, 422, "validation_error")


def test_presigned_upload_becomes_ready_and_is_found_by_search(
    api: Api, alice: User, claude: FakeModelServer, pump: EventPump
) -> None:
    data = sample_jpeg(1600, 1200, seed=3)
    created = create_upload(api, alice, size=len(data)).json()
    item_id, upload = created["item"]["id"], created["upload"]

    sent = httpx.post(
        upload["url"], data=upload["fields"], files={"file": ("beach.jpg", data, "image/jpeg")}
    )
    assert sent.status_code in (200, 201, 204), sent.text
    pump.drain()

    detail = api.http.get(f"/items/{item_id}", headers=alice.headers()).json()
    assert detail["status"] == "ready", detail
    assert (detail["width"], detail["height"]) == (1600, 1200)
    assert detail["category"] == "Travel" and detail["headline"] == DEFAULT_ANALYSIS["headline"]
    assert detail["analysis"]["version"] == 1 and detail["analysis"]["provider"] == "anthropic"
    assert detail["analysis"]["result"]["summary"] == DEFAULT_ANALYSIS["summary"]
    assert detail["failure"] is None and detail["ready_at"] and detail["warnings"] == []
    urls = detail["urls"]
    assert set(urls["thumbnails"]) == {"thumb_256", "thumb_1024"}
    assert httpx.get(urls["original"]).content == data
    assert httpx.get(urls["thumbnails"]["thumb_256"]).content[:4] == b"RIFF"  # WebP
    assert detail["thumbnail_url"]

    for mode in ("keyword", "semantic", "hybrid"):
        found = api.http.get(
            "/search", params={"q": "Lisbon pastel de nata", "mode": mode}, headers=alice.headers()
        )
        assert found.status_code == 200, found.text
        results = found.json()["results"]
        assert [r["item_id"] for r in results] == [item_id], (mode, results)
        assert results[0]["thumbnail_url"] and results[0]["status"] == "ready"
        low = -1.0 if mode == "semantic" else 0.0
        assert low <= results[0]["score"] <= 1.0
    nothing = api.http.get(
        "/search", params={"q": "ski resorts in Japan", "mode": "keyword"}, headers=alice.headers()
    )
    assert nothing.json()["results"] == []
    bad = api.http.get(
        "/search", params={"q": "Lisbon", "cursor": "forged"}, headers=alice.headers()
    )
    assert_error(bad, 400, "invalid_cursor")


def test_direct_upload_reanalyze_versions_and_delete(
    api: Api, alice: User, claude: FakeModelServer, pump: EventPump
) -> None:
    item = upload_through_api(api.http, alice.headers(), seed=5, name="../../lunch.jpg")
    item_id = item["id"]
    key = f"users/{alice.sub}/items/{item_id}/original"
    assert item["status"] == "uploading" and item["file_name"] == "lunch.jpg"
    stored = api.cloud.client("s3").get_object(Bucket=api.cloud.bucket, Key=key)
    assert stored["ContentType"] == "image/jpeg" and stored["Body"].read() == sample_jpeg(
        800, 600, seed=5
    )

    # Not analysable yet: the upload is still being processed.
    assert_error(
        api.http.post(f"/items/{item_id}/reanalyze", headers=alice.headers()),
        409,
        "not_reanalyzable",
    )
    pump.drain()
    assert api.http.get(f"/items/{item_id}", headers=alice.headers()).json()["status"] == "ready"

    food = {**DEFAULT_ANALYSIS, "category": "Food", "headline": "Lunch at a Lisbon tasca"}
    claude.script("/v1/messages", [food])
    accepted = api.http.post(f"/items/{item_id}/reanalyze", headers=alice.headers())
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "analyzing"
    detail = api.http.get(f"/items/{item_id}", headers=alice.headers()).json()
    assert detail["generation"] == 2 and detail["status"] == "analyzing"
    pump.drain()

    detail = api.http.get(f"/items/{item_id}", headers=alice.headers()).json()
    assert detail["status"] == "ready" and detail["category"] == "Food"
    versions = api.http.get(f"/items/{item_id}/analyses", headers=alice.headers()).json()
    assert versions["item_id"] == item_id
    assert [(a["version"], a["generation"]) for a in versions["analyses"]] == [(2, 2), (1, 1)]
    assert versions["analyses"][0]["result"]["headline"] == "Lunch at a Lisbon tasca"
    assert claude.count("/v1/messages") == 2

    prefix = f"users/{alice.sub}/items/{item_id}/"
    assert len(api.s3_keys(prefix)) == 4  # original, two thumbnails, analysis derivative
    deleted = api.http.delete(f"/items/{item_id}", headers=alice.headers())
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.s3_keys(prefix) == set()
    with session_scope() as session:
        uid = uuid.UUID(item_id)
        assert session.get(Item, uid) is None
        assert session.scalar(select(func.count()).where(Analysis.item_id == uid)) == 0
        assert session.get(SearchDocument, uid) is None
    assert_error(api.http.get(f"/items/{item_id}", headers=alice.headers()), 404, "item_not_found")
    assert_error(api.http.delete(f"/items/{item_id}", headers=alice.headers()), 404)
    found = api.http.get("/search", params={"q": "Lisbon"}, headers=alice.headers()).json()
    assert found["results"] == []


def test_direct_upload_refusals(serve: Callable[..., Api], alice: User) -> None:
    api = serve(COLLECTIONS_API_DIRECT_UPLOAD_MAX_BYTES="20000")
    headers = alice.headers()

    def send(name: str, data: bytes, content_type: str | None) -> httpx.Response:
        part = (name, data, content_type) if content_type else (name, data)
        return api.http.post("/items/upload", headers=headers, files={"file": part})

    png = sample_png(40, 30)
    ok = send("shot.png", png, "application/octet-stream")  # typed by the extension
    assert ok.status_code == 201 and ok.json()["content_type"] == "image/png", ok.text
    assert_error(send("notes.txt", b"hello", "text/plain"), 415, "unsupported_media_type")
    assert_error(send("blob", png, "application/octet-stream"), 415)
    assert_error(send("empty.jpg", b"", "image/jpeg"), 422, "empty_file")
    assert_error(send("big.jpg", b"\xff" * 20001, "image/jpeg"), 413, "upload_too_large")
    assert_error(send("huge.jpg", b"\xff" * 200_000, "image/jpeg"), 413, "payload_too_large")
    assert_error(api.http.post("/items/upload", headers=headers, data={"x": "1"}), 422)


def test_listing_is_newest_first_paginated_and_filtered(api: Api, alice: User) -> None:
    ids = [create_upload(api, alice, file_name=f"{n}.jpg").json()["item"]["id"] for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.http.get("/items", params=params, headers=alice.headers()).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1] and pages == 3

    # Give two items an analysis (as the pipeline would) and one a failure.
    with session_scope() as session:
        for item_id, category in ((ids[0], "Travel"), (ids[1], "Food")):
            session.add(
                Analysis(
                    item_id=uuid.UUID(item_id),
                    user_id=alice.sub,
                    version=1,
                    generation=1,
                    result={**DEFAULT_ANALYSIS, "category": category},
                    provider="local",
                    model="test",
                )
            )
        failed = session.get(Item, uuid.UUID(ids[2]))
        failed.status, failed.failure_stage, failed.failure_reason = "failed", "thumbnail", "bad"

    def listed(**params: object) -> list[str]:
        response = api.http.get("/items", params=params, headers=alice.headers())
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert listed(category="travel") == [ids[0]]
    assert listed(category="FOOD") == [ids[1]]
    assert listed(category="Nothing") == []
    assert listed(status="failed") == [ids[2]]
    assert listed(status="uploading") == [ids[4], ids[3], ids[1], ids[0]]
    failed_item = api.http.get(f"/items/{ids[2]}", headers=alice.headers()).json()
    assert failed_item["failure"] == {"stage": "thumbnail", "reason": "bad"}

    assert_error(api.http.get("/items", params={"status": "lost"}, headers=alice.headers()), 422)
    for cursor in ("garbage", "eyJ0IjogMX0", base64.urlsafe_b64encode(b'{"t":"x"}').decode()):
        response = api.http.get("/items", params={"cursor": cursor}, headers=alice.headers())
        assert_error(response, 400, "invalid_cursor")
