"""The image pipeline end to end on real PostgreSQL + pgvector and the AWS emulator:
S3 -> EventBridge -> rule -> queue -> handler, exactly as the topology wires it."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from runtime.db.models import Analysis, Item, SearchDocument
from runtime.db.session import session_scope
from runtime.domain.analysis import Analysis as AnalysisModel
from runtime.domain.items import create_item
from runtime.events import item_of
from runtime.local.cloud import (
    Attempt,
    EventPump,
    LocalCloud,
    LocalContext,
    invoke_in_process,
    load_handler,
)
from runtime.local.worker import scheduled_event
from runtime.topology import Function, dead_letter_consumer, function
from tests.conftest import dataset
from tests.corpus import bad_image_corpus, hostile_corpus, sample_heic, sample_jpeg
from tests.events import eventbridge_event, s3_object_created
from tests.fakes.model_server import FakeModelServer

USER = "0b8f2c3e-1111-4a4a-9c9c-000000000001"


def new_item(user: str = USER, name: str = "photo.jpg") -> Item:
    with session_scope() as session:
        return create_item(
            session, user_id=user, file_name=name, content_type="image/jpeg", byte_size=None
        )


def upload(cloud: LocalCloud, item: Item, data: bytes) -> None:
    cloud.client("s3").put_object(Bucket=cloud.bucket, Key=item.original_key, Body=data)


def reload(item: Item) -> Item:
    with session_scope() as session:
        return session.get(Item, item.id)


def analyses_of(item: Item) -> list[Analysis]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Analysis).where(Analysis.item_id == item.id).order_by(Analysis.version)
            )
        )


def take_event(cloud: LocalCloud, function_name: str) -> dict:
    """Remove the next event from a function's queue without handling it."""
    sqs = cloud.client("sqs")
    url = cloud.queues[function_name]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
    assert messages, f"no event waiting for {function_name}"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return json.loads(messages[0]["Body"])


def invoke(function_name: str, event: dict) -> dict:
    fn = function(function_name)
    return load_handler(fn)(event, LocalContext(fn.name, fn.memory_mb, fn.timeout_s))


def test_upload_becomes_ready(claude: FakeModelServer, env: LocalCloud, pump: EventPump) -> None:
    item = new_item()
    upload(env, item, sample_jpeg(2400, 1800))
    pump.drain()

    done = reload(item)
    assert done.status == "ready", (done.status, done.failure_reason)
    assert (done.width, done.height) == (2400, 1800)
    assert done.content_type == "image/jpeg" and len(done.sha256) == 64
    assert set(done.derived_keys) == {"thumb_256", "thumb_1024", "analysis"}
    keys = {o["Key"] for o in env.client("s3").list_objects_v2(Bucket=env.bucket)["Contents"]}
    assert set(done.derived_keys.values()) | {done.original_key} == keys

    [analysis] = analyses_of(item)
    assert (analysis.version, analysis.provider, analysis.model) == (
        1,
        "anthropic",
        "claude-sonnet-4-6",
    )
    assert analysis.input_tokens > 0 and analysis.output_tokens > 0
    assert claude.count("/v1/messages") == 1 and claude.problems == []
    with session_scope() as session:
        document = session.get(SearchDocument, item.id)
        assert document.user_id == USER and document.analysis_version == 1
        assert len(document.embedding) == 384
        assert analysis.result["headline"] in document.content
    assert pump.failures == 0 and env.dead_letters() == {n: 0 for n in env.dead_letter_queues}


def test_s3_event_as_aws_delivers_it(claude: FakeModelServer, env: LocalCloud) -> None:
    item = new_item()
    data = sample_jpeg()
    env.client("s3").put_object(Bucket=env.bucket, Key=item.original_key, Body=data)
    take_event(env, "thumbnail")  # the emulator's copy; feed the documented shape instead
    result = invoke("thumbnail", s3_object_created(env.bucket, item.original_key, len(data)))
    assert result["result"] == "done"
    assert reload(item).status == "analyzing"
    # a key that is not an original (a derivative, or junk) is ignored, not an error
    derived = reload(item).derived_keys["thumb_256"]
    assert invoke("thumbnail", s3_object_created(env.bucket, derived, 10))["result"] == "skipped"


def test_same_event_twice_gives_one_analysis_and_one_model_call(
    claude: FakeModelServer, env: LocalCloud, pump: EventPump
) -> None:
    item = new_item()
    upload(env, item, sample_jpeg())
    thumbnail_event = take_event(env, "thumbnail")
    assert invoke("thumbnail", thumbnail_event)["result"] == "done"
    # a redelivered S3 event before the analysis exists only publishes ImageProcessed again
    assert invoke("thumbnail", thumbnail_event)["result"] == "re-emitted"

    processed = take_event(env, "analyze")
    first = invoke("analyze", processed)
    second = invoke("analyze", processed)
    assert first["result"] == "done" and second["result"] == "re-emitted"
    assert claude.count("/v1/messages") == 1
    assert len(analyses_of(item)) == 1

    pump.drain()
    assert reload(item).status == "ready"
    assert len(analyses_of(item)) == 1 and claude.count("/v1/messages") == 1


def test_model_call_is_not_repeated_when_storing_failed(
    claude: FakeModelServer, env: LocalCloud
) -> None:
    """A retry after the model answered but before the analysis was stored reuses the answer."""
    from runtime.handlers.wiring import pipeline

    item = new_item()
    upload(env, item, sample_jpeg())
    invoke("thumbnail", take_event(env, "thumbnail"))
    processed = take_event(env, "analyze")
    guard = pipeline().model_calls
    detail = processed["detail"]
    key = f"analyze:{detail['item_id']}:{detail['generation']}"
    from runtime.local.cloud import LocalContext as Ctx

    guard.register_context(Ctx("analyze", 1024, 300))
    paid = {
        "analysis": AnalysisModel(category="Travel", headline="Answered once").model_dump(
            mode="json"
        ),
        "provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "input_tokens": 10,
        "output_tokens": 5,
        "latency_ms": 3,
    }
    guard.run(key, lambda: paid)  # the first attempt's call, which crashed before storing
    assert invoke("analyze", processed)["result"] == "done"
    assert claude.count("/v1/messages") == 0  # the retry reused the recorded answer
    [stored] = analyses_of(item)
    assert stored.result["headline"] == "Answered once" and stored.input_tokens == 10


def test_stale_item_analyzed_is_ignored(
    claude: FakeModelServer, env: LocalCloud, pump: EventPump
) -> None:
    item = new_item()
    upload(env, item, sample_jpeg())
    pump.drain()
    first_analyzed = eventbridge_event(
        "ItemAnalyzed",
        {
            "schema_version": "1",
            "item_id": str(item.id),
            "user_id": USER,
            "generation": 1,
            "analysis_version": 1,
        },
        source="collections.pipeline",
    )
    # the user asks for a re-analysis: generation 2, analysis v2, document v2
    with session_scope() as session:
        session.execute(
            update(Item).where(Item.id == item.id).values(status="analyzing", generation=2)
        )
    invoke(
        "analyze",
        eventbridge_event(
            "AnalysisRequested",
            {"schema_version": "1", "item_id": str(item.id), "user_id": USER, "generation": 2},
            source="collections.pipeline",
        ),
    )
    pump.drain()
    assert [a.version for a in analyses_of(item)] == [1, 2]
    assert reload(item).status == "ready"

    result = invoke("embed", first_analyzed)
    assert result["result"] == "skipped" and "stale" in result["detail"]
    with session_scope() as session:
        assert session.get(SearchDocument, item.id).analysis_version == 2
    # and an ImageProcessed of the old generation no longer triggers a model call
    calls = claude.count("/v1/messages")
    old = eventbridge_event(
        "ImageProcessed",
        {
            "schema_version": "1",
            "item_id": str(item.id),
            "user_id": USER,
            "generation": 1,
            "analysis_key": reload(item).derived_keys["analysis"],
            "width": 1,
            "height": 1,
            "content_type": "image/jpeg",
        },
        source="collections.pipeline",
    )
    assert invoke("analyze", old)["result"] == "skipped"
    assert claude.count("/v1/messages") == calls


@pytest.mark.parametrize("name", sorted(bad_image_corpus()))
def test_bad_file_fails_its_item_with_its_reason(
    name: str, env: LocalCloud, pump: EventPump
) -> None:
    data, reason = bad_image_corpus()[name]
    item = new_item(name=name)
    upload(env, item, data)
    pump.drain()
    failed = reload(item)
    assert failed.status == "failed"
    assert failed.failure_stage == "thumbnail"
    assert failed.failure_reason.startswith(reason), failed.failure_reason
    assert pump.failures == 0, "a bad file must not raise (it would be retried)"
    assert analyses_of(item) == []


def test_unreadable_exif_keeps_the_picture_with_a_warning(
    claude: FakeModelServer, env: LocalCloud, pump: EventPump
) -> None:
    data, expected = hostile_corpus()["exif-truncated-ifd.jpg"]
    item = new_item(name="from-a-chat.jpg")
    upload(env, item, data)
    pump.drain()
    done = reload(item)
    assert done.status == "ready", done.failure_reason
    assert (done.width, done.height) == expected.size
    assert [w["code"] for w in done.warnings] == ["exif_unreadable"]
    assert "orientation is not applied" in done.warnings[0]["detail"]


def test_heic_photo_is_processed(claude: FakeModelServer, env: LocalCloud, pump: EventPump) -> None:
    item = new_item(name="IMG_0001.HEIC")
    upload(env, item, sample_heic())
    pump.drain()
    done = reload(item)
    assert done.status == "ready", done.failure_reason
    assert done.content_type in {"image/heic", "image/heif"}


def test_throttling_and_overload_are_retried(
    claude: FakeModelServer, env: LocalCloud, pump: EventPump
) -> None:
    claude.script("/v1/messages", [429, 529])
    item = new_item()
    upload(env, item, sample_jpeg())
    pump.drain()
    assert reload(item).status == "ready"
    assert claude.count("/v1/messages") == 3 and claude.problems == []


def test_persistent_overload_raises_so_the_event_is_retried(
    claude: FakeModelServer, env: LocalCloud, pump: EventPump
) -> None:
    claude.script("/v1/messages", [529] * 6)  # more than the SDK's own retries
    item = new_item()
    upload(env, item, sample_jpeg())
    pump.drain()
    assert pump.failures >= 1  # the handler raised: the platform retried the event
    assert reload(item).status == "ready"
    assert len(analyses_of(item)) == 1


def test_malformed_output_is_retried_once_then_fails(
    claude: FakeModelServer, env: LocalCloud, pump: EventPump
) -> None:
    claude.script("/v1/messages", ["malformed"])
    recovered = new_item()
    upload(env, recovered, sample_jpeg())
    pump.drain()
    assert reload(recovered).status == "ready"
    assert claude.count("/v1/messages") == 2

    claude.reset()
    claude.script("/v1/messages", ["malformed", "malformed"])
    broken = new_item()
    upload(env, broken, sample_jpeg(seed=3))
    pump.drain()
    failed = reload(broken)
    assert failed.status == "failed" and failed.failure_stage == "analyze"
    assert failed.failure_reason.startswith("malformed_model_output")
    assert claude.count("/v1/messages") == 2 and pump.failures == 0


def test_cleanup_fails_abandoned_items_and_removes_orphans(env: LocalCloud) -> None:
    s3 = env.client("s3")
    abandoned, processing, healthy = new_item(), new_item(), new_item()
    s3.put_object(Bucket=env.bucket, Key=healthy.original_key, Body=b"kept")
    orphan_key = f"users/{USER}/items/{uuid.uuid4()}/original"
    s3.put_object(Bucket=env.bucket, Key=orphan_key, Body=b"orphan")
    past = datetime.now(UTC) - timedelta(days=1)
    with session_scope() as session:
        session.execute(update(Item).where(Item.id == abandoned.id).values(updated_at=past))
        session.execute(
            update(Item)
            .where(Item.id == processing.id)
            .values(status="processing", updated_at=past)
        )

    report = invoke("cleanup", scheduled_event("collections-cleanup"))
    # orphans younger than the upload window are kept (an upload may be in flight)
    assert report["orphan_objects"] == 0
    assert report["abandoned_uploads"] == 1 and report["stalled_items"] == 1
    assert reload(abandoned).failure_reason.startswith("upload_abandoned")
    stalled = reload(processing)
    assert (stalled.failure_stage, stalled.failure_reason.split(":")[0]) == ("thumbnail", "stalled")
    assert reload(healthy).status == "uploading"

    from runtime.domain.cleanup_stage import run_cleanup
    from runtime.handlers.wiring import pipeline

    with session_scope() as session:  # the healthy upload went through meanwhile
        session.execute(update(Item).where(Item.id == healthy.id).values(status="ready"))
    later = run_cleanup(pipeline(), now=datetime.now(UTC) + timedelta(days=1))
    assert later.orphan_objects == 1
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=env.bucket).get("Contents", [])}
    assert orphan_key not in keys and healthy.original_key in keys


class CountingInvoker:
    """Runs each attempt in this process, as the tests' pump does, and counts the attempts each
    function makes on each item. An item attempted more often than its function's retry policy
    allows is a crash loop: the count fails the test at once rather than when the loop ends."""

    def __init__(self) -> None:
        self.attempts: Counter[tuple[str, str]] = Counter()

    def __call__(
        self, fn: Function, event: dict, timeout_s: int, heartbeat: Callable[[], None]
    ) -> Attempt:
        if fn != dead_letter_consumer():
            key = (fn.name, item_of(event))
            self.attempts[key] += 1
            allowed = fn.retry.maximum_retry_attempts + 1
            assert self.attempts[key] <= allowed, f"crash loop: {key} attempt {self.attempts[key]}"
        return invoke_in_process(fn, event, timeout_s, heartbeat)


# Only a guard against a hung pipeline, so that a hang cannot stall CI: how long the batch takes
# depends on the machine and is measured by benchmarks, never asserted here.
SCREENSHOTS_HANG_GUARD_S = 3600


@pytest.mark.timeout(SCREENSHOTS_HANG_GUARD_S + 600)
def test_all_screenshots_become_ready_with_offline_providers(env: LocalCloud) -> None:
    folder = dataset("screenshots")
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == 96
    items = []
    for path in files:
        item = new_item(name=path.name)
        upload(env, item, path.read_bytes())
        items.append(item)
    counting = CountingInvoker()
    pump = EventPump(env, retry_delay_seconds=0, invoker=counting)
    try:
        pump.drain(timeout_s=SCREENSHOTS_HANG_GUARD_S)
    except TimeoutError as hung:
        made = sum(counting.attempts.values())
        pytest.fail(f"hang guard (not a speed target): {hung} ({made} attempts made)")

    done = [reload(item) for item in items]
    assert [(i.file_name, i.failure_reason) for i in done if i.status != "ready"] == []
    # Each item went through each stage, within its retry policy; none needed a retry at all.
    stages = ("thumbnail", "analyze", "embed")
    for item in done:
        for stage in stages:
            attempts = counting.attempts[(stage, str(item.id))]
            assert 1 <= attempts <= function(stage).retry.maximum_retry_attempts + 1, (
                item.file_name,
                stage,
                attempts,
            )
    assert {stage for stage, _ in counting.attempts} == set(stages)
    assert pump.failures == 0 and pump.dead_lettered == 0
    with session_scope() as session:
        providers = set(session.scalars(select(Analysis.provider)))
        documents = session.scalar(select(func.count()).select_from(SearchDocument))
    assert providers == {"local"} and documents == 96


def test_a_crashed_attempt_is_in_progress_and_the_next_delivery_waits_it_out(
    env: LocalCloud,
) -> None:
    """A worker killed mid-call leaves the call's record "in progress"; the next delivery is
    not a failure: it waits until the record expires with the dead attempt's timeout, then
    makes the call itself, once."""
    from runtime.adapters.idempotency import IdempotentCalls

    guard = IdempotentCalls(env.idempotency_table, env.client("dynamodb"))
    calls: list[str] = []

    def crash() -> dict:
        calls.append("crashed")
        raise KeyboardInterrupt  # not an Exception: Powertools keeps the record in progress

    guard.register_context(LocalContext("analyze", 1024, 3))  # the dead attempt's timeout
    with pytest.raises(KeyboardInterrupt):
        guard.run("analyze:item:1", crash)

    def succeed() -> dict:
        calls.append("paid")
        return {"analysis": "ok"}

    guard.register_context(LocalContext("analyze", 1024, 30))
    assert guard.run("analyze:item:1", succeed) == {"analysis": "ok"}
    assert calls == ["crashed", "paid"]
    assert 1.5 <= guard.waited_s <= 5
    # and a redelivery after that gets the stored result without a call
    assert guard.run("analyze:item:1", succeed) == {"analysis": "ok"}
    assert calls == ["crashed", "paid"]


def test_waiting_for_an_attempt_in_progress_is_bounded_by_the_invocation(env: LocalCloud) -> None:
    from runtime.adapters.idempotency import IdempotentCalls
    from runtime.domain.errors import TransientError

    guard = IdempotentCalls(env.idempotency_table, env.client("dynamodb"))
    guard.register_context(LocalContext("analyze", 1024, 60))

    def crash() -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guard.run("analyze:item:2", crash)
    guard.register_context(LocalContext("analyze", 1024, 3))  # less time left than the lock
    with pytest.raises(TransientError, match="still in progress"):
        guard.run("analyze:item:2", lambda: {"never": "called"})


def test_dead_letters_fail_their_item_only_where_the_event_left_it(env: LocalCloud) -> None:
    from runtime.domain.deadletter_stage import DeadLetter
    from runtime.local.cloud import Attempt, failure_record

    analyzing = new_item()
    moved_on = new_item()
    with session_scope() as session:
        session.execute(
            update(Item).where(Item.id == analyzing.id).values(status="analyzing", generation=1)
        )
        session.execute(
            update(Item).where(Item.id == moved_on.id).values(status="analyzing", generation=2)
        )

    def analysis_event(item: Item, generation: int) -> dict:
        return eventbridge_event(
            "ImageProcessed",
            {
                "item_id": str(item.id),
                "user_id": USER,
                "generation": generation,
                "analysis_key": "k",
                "width": 1,
                "height": 1,
                "content_type": "image/jpeg",
            },
            source="collections.pipeline",
        )

    records = [
        failure_record(
            function("analyze"),
            analysis_event(analyzing, 1),
            Attempt("Runtime.OutOfMemory", "1100 MB resident exceeds the function's 1024 MB"),
            3,
        ),
        # a re-analysis (generation 2) superseded this one: its dead letter changes nothing
        failure_record(
            function("analyze"), analysis_event(moved_on, 1), Attempt("TransientError", "x"), 3
        ),
    ]
    batch = {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(record),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:analyze-dlq",
                "awsRegion": "us-east-1",
            }
            for i, record in enumerate(records)
        ]
    }
    assert invoke("deadletter", batch) == {"batchItemFailures": []}
    failed = reload(analyzing)
    assert (failed.status, failed.failure_stage) == ("failed", "analyze")
    assert failed.failure_reason == (
        "retries_exhausted: Runtime.OutOfMemory: 1100 MB resident exceeds the function's 1024 MB"
    )
    assert reload(moved_on).status == "analyzing"

    # EventBridge's own dead letter (it could not invoke the function): the event, and the
    # error in message attributes
    thumbnailing = new_item()
    raw = DeadLetter.from_message(
        json.dumps(s3_object_created(env.bucket, thumbnailing.original_key, 10)),
        {"ERROR_CODE": {"stringValue": "ThrottlingException", "dataType": "String"}},
    )
    assert raw.error_type == "ThrottlingException"
    from runtime.domain.deadletter_stage import fail_dead_lettered
    from runtime.handlers.wiring import pipeline

    assert fail_dead_lettered(pipeline(), raw).result == "failed"
    assert reload(thumbnailing).failure_stage == "thumbnail"
    assert reload(thumbnailing).failure_reason == "retries_exhausted: ThrottlingException"


def test_cleanup_fails_items_stalled_in_any_stage_and_keeps_their_objects(
    env: LocalCloud,
) -> None:
    stalled = {status: new_item() for status in ("analyzing", "indexing")}
    recent = new_item()
    past = datetime.now(UTC) - timedelta(days=1)
    with session_scope() as session:
        for status, item in stalled.items():
            session.execute(
                update(Item).where(Item.id == item.id).values(status=status, updated_at=past)
            )
        session.execute(update(Item).where(Item.id == recent.id).values(status="analyzing"))
    upload(env, stalled["analyzing"], sample_jpeg())

    report = invoke("cleanup", scheduled_event("collections-cleanup"))
    assert report["stalled_items"] == 2
    assert (
        reload(stalled["analyzing"]).failure_stage,
        reload(stalled["indexing"]).failure_stage,
    ) == (
        "analyze",
        "embed",
    )
    assert reload(stalled["indexing"]).failure_reason.startswith(
        "stalled: no progress while indexing"
    )
    assert reload(recent).status == "analyzing"
    keys = [
        o["Key"] for o in env.client("s3").list_objects_v2(Bucket=env.bucket).get("Contents", [])
    ]
    assert stalled["analyzing"].original_key in keys  # kept: the user can retry the item
