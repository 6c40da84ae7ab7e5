"""Every item ends ready or failed, and a failed item can be retried: the model API unreachable,
a presigned POST used again after the item was ready."""

from __future__ import annotations

import hashlib
from io import BytesIO

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from runtime.db.models import Analysis, Item, SearchDocument
from runtime.db.session import session_scope
from runtime.local.cloud import EventPump, LocalCloud
from runtime.local.postgres import free_port
from tests.api.conftest import Api, User
from tests.api.support import assert_error, upload_through_api
from tests.conftest import reset_process_state
from tests.corpus import sample_jpeg, sample_png
from tests.fakes.model_server import FakeModelServer


def analyses_of(item_id: str) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(Analysis).where(Analysis.item_id == item_id)
        )


def test_model_api_unreachable_fails_the_item_and_reanalyze_recovers_it(
    api: Api,
    alice: User,
    claude: FakeModelServer,
    env: LocalCloud,
    pump: EventPump,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the API stopped: nothing listens where the SDK connects
    monkeypatch.setenv("COLLECTIONS_ANTHROPIC_BASE_URL", f"http://127.0.0.1:{free_port()}")
    reset_process_state()
    item = upload_through_api(api.http, alice.headers(), seed=31)
    pump.drain()

    detail = api.http.get(f"/items/{item['id']}", headers=alice.headers()).json()
    assert detail["status"] == "failed", detail
    assert detail["failure"]["stage"] == "analyze"
    reason = detail["failure"]["reason"]
    assert reason.startswith("retries_exhausted: "), reason
    assert "Error" in reason.split(":")[1]  # the last error's kind, e.g. TransientError
    assert pump.failures == 3 and pump.dead_lettered == 1  # 1 attempt + 2 retries, then DLQ
    assert analyses_of(item["id"]) == 0 and claude.count("/v1/messages") == 0

    # the API is back: the user retries the failed item
    monkeypatch.setenv("COLLECTIONS_ANTHROPIC_BASE_URL", claude.url)
    reset_process_state()
    retried = api.http.post(f"/items/{item['id']}/reanalyze", headers=alice.headers())
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "analyzing" and retried.json()["failure"] is None
    pump.drain()
    detail = api.http.get(f"/items/{item['id']}", headers=alice.headers()).json()
    assert detail["status"] == "ready", detail
    assert analyses_of(item["id"]) == claude.answered("/v1/messages") == 1


def test_presigned_post_used_again_after_ready_starts_a_new_generation(
    api: Api, alice: User, claude: FakeModelServer, pump: EventPump
) -> None:
    first = sample_jpeg(1200, 900, seed=41)
    created = api.http.post(
        "/items",
        headers=alice.headers(),
        json={"file_name": "a.jpg", "content_type": "image/jpeg", "size": len(first)},
    ).json()
    item_id, form = created["item"]["id"], created["upload"]

    def post(data: bytes, content_type: str) -> None:
        fields = {**form["fields"]}
        sent = httpx.post(
            form["url"], data=fields, files={"file": ("a", data, content_type)}, timeout=30
        )
        assert sent.status_code in (200, 201, 204), sent.text

    post(first, "image/jpeg")
    pump.drain()
    ready = api.http.get(f"/items/{item_id}", headers=alice.headers()).json()
    assert ready["status"] == "ready" and ready["generation"] == 1

    second = sample_png(640, 480, seed=42)  # S3 accepts the same form until it expires
    post(second, "image/jpeg")
    pump.drain()
    again = api.http.get(f"/items/{item_id}", headers=alice.headers()).json()
    assert again["status"] == "ready", again
    assert again["generation"] == 2
    assert (again["width"], again["height"], again["size"]) == (640, 480, len(second))
    assert again["content_type"] == "image/png"
    assert httpx.get(again["urls"]["original"]).content == second
    with session_scope() as session:
        stored = session.get(Item, item_id)
        assert stored is not None and stored.sha256 == hashlib.sha256(second).hexdigest()
        versions = session.scalars(
            select(Analysis.generation).where(Analysis.item_id == item_id)
        ).all()
        indexed = session.scalar(
            select(SearchDocument.analysis_version).where(SearchDocument.item_id == item_id)
        )
    assert sorted(versions) == [1, 2] and indexed == 2
    thumb = httpx.get(again["urls"]["thumbnails"]["thumb_1024"]).content
    assert Image.open(BytesIO(thumb)).size == (640, 480)  # the new picture's (never upscaled)
    assert claude.answered("/v1/messages") == 2


def test_the_same_bytes_twice_resolve_to_one_item_per_user(
    api: Api, alice: User, bob: User, claude: FakeModelServer, pump: EventPump
) -> None:
    data = sample_jpeg(800, 600, seed=51)
    first = api.http.post(
        "/items/upload", headers=alice.headers(), files={"file": ("a.jpg", data, "image/jpeg")}
    )
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]

    # through the API again: refused, naming the item that has these bytes
    again = api.http.post(
        "/items/upload", headers=alice.headers(), files={"file": ("b.jpg", data, "image/jpeg")}
    )
    error = assert_error(again, 409, "duplicate_item")
    assert error["item_id"] == first_id
    # a presigned upload that declares the file's hash: refused the same way
    declared = api.http.post(
        "/items",
        headers=alice.headers(),
        json={
            "file_name": "c.jpg",
            "content_type": "image/jpeg",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    assert assert_error(declared, 409, "duplicate_item")["item_id"] == first_id
    # another user is never linked to it
    theirs = api.http.post(
        "/items/upload", headers=bob.headers(), files={"file": ("a.jpg", data, "image/jpeg")}
    )
    assert theirs.status_code == 201

    # a presigned upload that did not declare its hash: the pipeline resolves it
    created = api.http.post(
        "/items",
        headers=alice.headers(),
        json={"file_name": "d.jpg", "content_type": "image/jpeg", "size": len(data)},
    ).json()
    sent = httpx.post(
        created["upload"]["url"],
        data=created["upload"]["fields"],
        files={"file": ("d.jpg", data, "image/jpeg")},
        timeout=30,
    )
    assert sent.status_code in (200, 201, 204)
    pump.drain()
    late = api.http.get(f"/items/{created['item']['id']}", headers=alice.headers()).json()
    assert late["status"] == "failed"
    assert late["failure"] == {
        "stage": "thumbnail",
        "reason": f"duplicate_item: the same image is item {first_id}",
    }
    assert late["urls"]["thumbnails"] == {}
    ready = api.http.get(f"/items/{first_id}", headers=alice.headers()).json()
    assert ready["status"] == "ready"
    found = api.http.get(
        "/search", params={"q": "Lisbon", "mode": "keyword"}, headers=alice.headers()
    ).json()
    assert [r["item_id"] for r in found["results"]] == [first_id]
    # a failed duplicate does not block uploading the picture again later
    with session_scope() as session:
        session.execute(Item.__table__.update().where(Item.id == first_id).values(status="failed"))
    retry = api.http.post(
        "/items/upload", headers=alice.headers(), files={"file": ("e.jpg", data, "image/jpeg")}
    )
    assert retry.status_code == 201
