"""The topology declaration and the event contracts."""

from __future__ import annotations

import importlib
import uuid

import pytest
from pydantic import ValidationError

from runtime.events import (
    ImageProcessed,
    ItemFailed,
    OriginalKey,
    original_key,
)
from runtime.handlers.thumbnail import S3ObjectCreatedEvent
from runtime.topology import (
    FUNCTIONS,
    DeadLetters,
    Deploy,
    EventType,
    Http,
    ObjectCreated,
    OnEvent,
    Schedule,
    dead_letter_consumer,
    event_functions,
    event_pattern,
    function_for_event,
)
from tests.events import s3_object_created


def test_every_handler_path_imports() -> None:
    for fn in FUNCTIONS:
        if fn.name == "api":
            continue  # the HTTP API lands with its own issue
        module, _, attribute = fn.handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), fn.name


def test_names_are_unique_and_triggers_cover_the_flow() -> None:
    names = [fn.name for fn in FUNCTIONS]
    assert len(names) == len(set(names))
    by_kind = {type(fn.trigger) for fn in FUNCTIONS}
    assert by_kind == {Http, ObjectCreated, OnEvent, Schedule, DeadLetters, Deploy}
    consumed = {
        t for fn in FUNCTIONS if isinstance(fn.trigger, OnEvent) for t in fn.trigger.detail_types
    }
    assert {EventType.IMAGE_PROCESSED, EventType.ITEM_ANALYZED} <= consumed
    assert {fn.name for fn in event_functions()} == {
        "thumbnail",
        "analyze",
        "embed",
        "assistant",
        "cleanup",
    }
    assert dead_letter_consumer().name == "deadletter"


@pytest.mark.parametrize(
    ("detail_type", "source", "expected"),
    [
        ("Object Created", "aws.s3", "thumbnail"),
        ("ImageProcessed", "collections.pipeline", "analyze"),
        ("AnalysisRequested", "collections.pipeline", "analyze"),
        ("ItemAnalyzed", "collections.pipeline", "embed"),
        ("Scheduled Event", "aws.events", "cleanup"),
        ("Object Created", "elsewhere", None),
        ("ItemIndexed", "collections.pipeline", None),
    ],
)
def test_the_function_an_event_was_meant_for(
    detail_type: str, source: str, expected: str | None
) -> None:
    fn = function_for_event(detail_type, source)
    assert (fn.name if fn else None) == expected


def test_event_patterns() -> None:
    thumbnail = next(fn for fn in FUNCTIONS if fn.name == "thumbnail")
    pattern = event_pattern(thumbnail, bucket="b1")
    assert pattern["source"] == ["aws.s3"] and pattern["detail"]["bucket"]["name"] == ["b1"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "users/*/items/*/original"}]
    embed = next(fn for fn in FUNCTIONS if fn.name == "embed")
    assert event_pattern(embed, bucket="b1") == {
        "source": ["collections.pipeline"],
        "detail-type": ["ItemAnalyzed"],
    }


def test_s3_event_parses_as_delivered() -> None:
    item_id = uuid.uuid4()
    key = original_key("user-1", item_id)
    event = S3ObjectCreatedEvent.model_validate(s3_object_created("bucket-1", key, 1234))
    assert event.detail.object.key == key and event.detail.object.size == 1234
    assert OriginalKey.parse(key) == OriginalKey(user_id="user-1", item_id=item_id)
    assert OriginalKey.parse(f"users/user-1/items/{item_id}/derived/thumb_256.webp") is None
    assert OriginalKey.parse("users/user-1/items/not-a-uuid/original") is None


def test_pipeline_events_carry_schema_version_and_tenant() -> None:
    event = ItemFailed(item_id=uuid.uuid4(), user_id="u", stage="thumbnail", reason="empty_file")
    assert event.model_dump(mode="json")["schema_version"] == "1"
    with pytest.raises(ValidationError):
        ImageProcessed.model_validate(
            {
                "schema_version": "2",
                "item_id": str(uuid.uuid4()),
                "user_id": "u",
                "generation": 1,
                "analysis_key": "k",
                "width": 1,
                "height": 1,
                "content_type": "image/jpeg",
            }
        )
    with pytest.raises(ValidationError):
        ItemFailed.model_validate(
            {"item_id": str(uuid.uuid4()), "user_id": "", "stage": "s", "reason": "r"}
        )
