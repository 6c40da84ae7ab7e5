"""The pipeline's real collaborators, created once per process (per Lambda container).

Cold start imports only what parsing an event needs: the ORM, the idempotency machinery, the
model SDKs and image libraries are imported by the first event that uses them (see
``benchmarks/cold_start.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from runtime.adapters.aws import client
from runtime.adapters.bus import EventBridgePublisher
from runtime.adapters.idempotency import IdempotentCalls
from runtime.adapters.storage import S3BlobStore
from runtime.config import get_settings
from runtime.domain.pipeline import Outcome, Pipeline, UnguardedCalls
from runtime.providers.factory import (
    get_analyzer,
    get_assistant,
    get_embedder,
    get_web_search,
)
from runtime.topology import function

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from runtime.adapters.conversations import DynamoConversationStore
    from runtime.domain.assistant import AssistantServices

METRICS_NAMESPACE = "Collections"


@contextmanager
def _sessions() -> Iterator[Session]:
    from runtime.db.session import session_scope

    with session_scope() as session:
        yield session


@cache
def pipeline() -> Pipeline:
    settings = get_settings()
    guard = (
        IdempotentCalls(settings.idempotency_table, client("dynamodb"))
        if settings.idempotency_table
        else UnguardedCalls()
    )
    return Pipeline(
        settings=settings,
        sessions=_sessions,
        store=S3BlobStore(client("s3"), settings.bucket),
        publisher=EventBridgePublisher(
            client("events"), settings.event_bus_name, settings.event_source
        ),
        analyzer=lambda: get_analyzer(settings),
        embedder=lambda: get_embedder(settings),
        model_calls=guard,
    )


@cache
def conversation_store() -> DynamoConversationStore:
    """The conversations table (the API and the assistant function)."""
    from runtime.adapters.conversations import DynamoConversationStore

    settings = get_settings()
    if not settings.conversations_table:
        raise RuntimeError("no conversations table configured (COLLECTIONS_CONVERSATIONS_TABLE)")
    return DynamoConversationStore(
        client("dynamodb"),
        settings.conversations_table,
        pending_timeout_s=function("assistant").timeout_s + 60,
        max_messages=settings.assistant_max_messages_per_conversation,
    )


@cache
def assistant_services() -> AssistantServices:
    from runtime.domain.assistant import AssistantServices

    settings = get_settings()
    assistant = get_assistant(settings)
    web = get_web_search(settings)
    return AssistantServices(
        settings=settings,
        store=conversation_store(),
        sessions=_sessions,
        embedder=lambda: get_embedder(settings),
        assistant=lambda: assistant,
        web=lambda: web,
    )


def report(outcome: Outcome, logger: Logger, metrics: Metrics) -> dict[str, str | None]:
    """Log the outcome with its item and count it as a metric (ItemsDone, ItemsFailed…)."""
    logger.append_keys(item_id=outcome.item_id)
    logger.info("event handled", extra={"result": outcome.result, "detail": outcome.detail})
    name = "Items" + outcome.result.title().replace("-", "")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return outcome.as_dict()
