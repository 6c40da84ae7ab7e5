"""Two users cannot see, search, fetch, re-analyze or delete each other's items (property-tested
over HTTP with Hypothesis: random actor, operation, target and token kind)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.db.models import Item
from runtime.db.session import session_scope
from runtime.local.cloud import EventPump
from tests.api.conftest import Api, User
from tests.api.support import assert_error, upload_through_api
from tests.fakes.model_server import FakeModelServer

OPERATIONS = ("get", "analyses", "reanalyze", "delete", "list", "search")


@dataclass
class World:
    api: Api
    users: dict[str, User]
    owner: dict[str, str]  # item id -> owner name
    stranger: str  # an item id nobody has


@pytest.fixture
def world(api: Api, alice: User, bob: User, claude: FakeModelServer, pump: EventPump) -> World:
    users = {"alice": alice, "bob": bob}
    owner: dict[str, str] = {}
    for seed, name in enumerate(users):
        # One item each that the pipeline takes to ready (both analysed the same way, so a
        # search matches both collections), and one still uploading.
        ready = upload_through_api(api.http, users[name].headers(), seed=seed)
        owner[ready["id"]] = name
        pending = api.http.post(
            "/items",
            headers=users[name].headers(),
            json={"file_name": "later.png", "content_type": "image/png", "size": 10},
        ).json()["item"]
        owner[pending["id"]] = name
    pump.drain()
    return World(api, users, owner, str(uuid.uuid4()))


def state(item_id: str) -> tuple[str, int] | None:
    with session_scope() as session:
        item = session.get(Item, uuid.UUID(item_id))
        return (item.status, item.generation) if item else None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_users_never_reach_each_others_items(world: World, data: st.DataObject) -> None:
    api = world.api
    actor = data.draw(st.sampled_from(sorted(world.users)), label="actor")
    use = data.draw(st.sampled_from(["id", "access"]), label="token")
    operation = data.draw(st.sampled_from(OPERATIONS), label="operation")
    target = data.draw(st.sampled_from([*sorted(world.owner), world.stranger]), label="target")
    headers = world.users[actor].headers(use)
    own = {item_id for item_id, name in world.owner.items() if name == actor}

    if operation == "list":
        listed = api.http.get("/items", params={"limit": 100}, headers=headers).json()
        assert {item["id"] for item in listed["items"]} == own
        return
    if operation == "search":
        for mode in ("keyword", "hybrid", "semantic"):
            found = api.http.get(
                "/search", params={"q": "Lisbon tram", "mode": mode}, headers=headers
            ).json()
            ids = {hit["item_id"] for hit in found["results"]}
            assert ids <= own and ids, (mode, found)
        return

    method, path = {
        "get": ("GET", f"/items/{target}"),
        "analyses": ("GET", f"/items/{target}/analyses"),
        "reanalyze": ("POST", f"/items/{target}/reanalyze"),
        "delete": ("DELETE", f"/items/{target}"),
    }[operation]
    if target in own:
        if operation == "delete":
            return  # the owner may delete; keep the world intact for the other examples
        response = api.http.request(method, path, headers=headers)
        assert response.status_code in (200, 202, 409), response.text
        return

    before = state(target)
    objects = (
        api.s3_keys(f"users/{world.users[world.owner[target]].sub}/items/{target}/")
        if (target in world.owner)
        else set()
    )
    response = api.http.request(method, path, headers=headers)
    error = assert_error(response, 404, "item_not_found")
    # Exactly the answer for an id that does not exist: nothing confirms the item exists.
    nobody = api.http.request(method, path.replace(target, world.stranger), headers=headers)
    assert {**error, "request_id": None} == {
        **assert_error(nobody, 404, "item_not_found"),
        "request_id": None,
    }
    assert state(target) == before  # not re-analyzed, not deleted
    if target in world.owner:
        owner = world.users[world.owner[target]]
        assert api.s3_keys(f"users/{owner.sub}/items/{target}/") == objects
        assert api.http.get(f"/items/{target}", headers=owner.headers()).status_code == 200


def test_every_cross_user_operation_is_a_404(world: World) -> None:
    """The exhaustive version of the property above: every user, token kind and operation on
    every item of the other user."""
    api = world.api
    for actor, user in world.users.items():
        for use in ("id", "access"):
            headers = user.headers(use)
            for target, owner in world.owner.items():
                if owner == actor:
                    continue
                before = state(target)
                for method, path in (
                    ("GET", f"/items/{target}"),
                    ("GET", f"/items/{target}/analyses"),
                    ("POST", f"/items/{target}/reanalyze"),
                    ("DELETE", f"/items/{target}"),
                ):
                    response = api.http.request(method, path, headers=headers)
                    assert_error(response, 404, "item_not_found")
                assert state(target) == before
            listed = api.http.get("/items", headers=headers).json()["items"]
            assert all(world.owner[item["id"]] == actor for item in listed)
