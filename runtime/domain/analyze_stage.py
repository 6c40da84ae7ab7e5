"""Stage 2: the analysis-size derivative -> a validated analysis version, and ItemAnalyzed.

Idempotent three ways: a stale event (older generation) is ignored; an analysis already stored
for the event's generation is not made again (the unique (item_id, generation) constraint
settles races); and the model call itself runs through the pipeline's call guard, so a
redelivery that arrives while or after the first call ran never pays for a second one.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from runtime.db.models import Analysis, ItemStatus
from runtime.domain.errors import PermanentError
from runtime.domain.items import (
    analysis_for_generation,
    get_item,
    next_analysis_version,
    transition,
)
from runtime.domain.pipeline import Outcome, Pipeline, fail_and_announce
from runtime.events import AnalysisRequested, ImageProcessed, ItemAnalyzed

STAGE = "analyze"


def analyze_item(pipeline: Pipeline, event: ImageProcessed | AnalysisRequested) -> Outcome:
    ref = str(event.item_id)
    with pipeline.sessions() as session:
        item = get_item(session, event.user_id, event.item_id)
        if item is None:
            return Outcome("skipped", "item no longer exists", ref)
        if event.generation < item.generation:
            return Outcome(
                "skipped", f"stale: generation {event.generation} < {item.generation}", ref
            )
        existing = analysis_for_generation(session, item, event.generation)
        if existing is not None:
            pipeline.publisher.publish(_analyzed(event, existing.version))
            return Outcome("re-emitted", f"analysis v{existing.version} already stored", ref)
        if item.status != ItemStatus.ANALYZING:
            return Outcome("skipped", f"item is {item.status}", ref)
        analysis_key = item.derived_keys.get("analysis")
    if not analysis_key:
        return fail_and_announce(
            pipeline, event.user_id, event.item_id, stage=STAGE, reason="missing_derivative"
        )

    def call_model() -> dict:
        image = pipeline.store.get(analysis_key)
        result = pipeline.analyzer().analyze(image, "image/jpeg")
        return {
            "analysis": result.analysis.model_dump(mode="json"),
            "provider": result.provider,
            "model": result.model,
            "input_tokens": result.input_tokens,
            "cache_creation_input_tokens": result.cache_creation_input_tokens,
            "cache_read_input_tokens": result.cache_read_input_tokens,
            "output_tokens": result.output_tokens,
            "latency_ms": result.latency_ms,
        }

    try:
        result = pipeline.model_calls.run(f"analyze:{event.item_id}:{event.generation}", call_model)
    except PermanentError as error:
        return fail_and_announce(
            pipeline,
            event.user_id,
            event.item_id,
            stage=STAGE,
            reason=error.reason,
            detail=error.detail,
        )

    with pipeline.sessions() as session:
        item = get_item(session, event.user_id, event.item_id, lock=True)
        if item is None:
            return Outcome("skipped", "item deleted during analysis", ref)
        if item.generation != event.generation:
            return Outcome("skipped", "a newer analysis was requested meanwhile", ref)
        stored = analysis_for_generation(session, item, event.generation)
        if stored is None:
            stored = Analysis(
                item_id=item.id,
                user_id=item.user_id,
                version=next_analysis_version(session, item),
                generation=event.generation,
                result=result["analysis"],
                provider=result["provider"],
                model=result["model"],
                input_tokens=result["input_tokens"],
                # .get: a result stored by the call guard before these counts were recorded
                cache_creation_input_tokens=result.get("cache_creation_input_tokens", 0),
                cache_read_input_tokens=result.get("cache_read_input_tokens", 0),
                output_tokens=result["output_tokens"],
                latency_ms=result["latency_ms"],
            )
            session.add(stored)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return Outcome("skipped", "a concurrent delivery stored this analysis", ref)
        transition(session, item, from_statuses=(ItemStatus.ANALYZING,), to=ItemStatus.INDEXING)
        version = stored.version
    pipeline.publisher.publish(_analyzed(event, version))
    return Outcome("done", f"analysis v{version} by {result['provider']}/{result['model']}", ref)


def _analyzed(event: ImageProcessed | AnalysisRequested, version: int) -> ItemAnalyzed:
    return ItemAnalyzed(
        item_id=event.item_id,
        user_id=event.user_id,
        generation=event.generation,
        analysis_version=version,
    )
