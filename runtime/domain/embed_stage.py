"""Stage 3: the latest analysis -> the item's search document (full text + embedding), ready."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from runtime.db.models import Item, ItemStatus, SearchDocument
from runtime.domain.documents import TEXT_SEARCH_CONFIG, SearchDocumentText, build_document
from runtime.domain.items import get_item, latest_analysis, transition
from runtime.domain.pipeline import Outcome, Pipeline
from runtime.events import ItemAnalyzed, ItemIndexed

_UPSERT = text(
    f"""
    INSERT INTO search_documents
        (item_id, user_id, analysis_version, category, content, tsv, embedding, embedding_model,
         updated_at)
    VALUES (
        :item_id, :user_id, :analysis_version, :category, :content,
        setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', :a), 'A')
          || setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', :b), 'B')
          || setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', :c), 'C')
          || setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', :d), 'D'),
        CAST(:embedding AS vector), :embedding_model, now())
    ON CONFLICT (item_id) DO UPDATE SET
        analysis_version = EXCLUDED.analysis_version,
        category = EXCLUDED.category,
        content = EXCLUDED.content,
        tsv = EXCLUDED.tsv,
        embedding = EXCLUDED.embedding,
        embedding_model = EXCLUDED.embedding_model,
        updated_at = now()
    WHERE search_documents.analysis_version <= EXCLUDED.analysis_version
      AND search_documents.user_id = EXCLUDED.user_id
    """
)


def index_item(pipeline: Pipeline, event: ItemAnalyzed) -> Outcome:
    ref = str(event.item_id)
    with pipeline.sessions() as session:
        item = get_item(session, event.user_id, event.item_id)
        if item is None:
            return Outcome("skipped", "item no longer exists", ref)
        latest = latest_analysis(session, item)
        if latest is None:
            return Outcome("skipped", "item has no analysis", ref)
        if event.analysis_version < latest.version:
            return Outcome("skipped", f"stale: v{event.analysis_version} < v{latest.version}", ref)
        indexed_version = session.scalar(
            select(SearchDocument.analysis_version).where(
                SearchDocument.item_id == item.id, SearchDocument.user_id == item.user_id
            )
        )
        if indexed_version is not None and indexed_version >= latest.version:
            _mark_ready(session, item, latest.generation)
            return Outcome("skipped", f"v{latest.version} already indexed", ref)
        document = build_document(latest.result)
        version, generation = latest.version, latest.generation

    embedder = pipeline.embedder()
    vector = embedder.embed_documents([document.embedded_text])[0]

    with pipeline.sessions() as session:
        item = get_item(session, event.user_id, event.item_id, lock=True)
        if item is None:
            return Outcome("skipped", "item deleted while indexing", ref)
        upsert_search_document(
            session, item, version, document, vector, f"{embedder.provider}/{embedder.model}"
        )
        _mark_ready(session, item, generation)
    pipeline.publisher.publish(
        ItemIndexed(item_id=event.item_id, user_id=event.user_id, analysis_version=version)
    )
    return Outcome("done", f"indexed v{version}", ref)


def upsert_search_document(
    session: Session,
    item: Item,
    analysis_version: int,
    document: SearchDocumentText,
    vector: list[float],
    model: str,
) -> None:
    """Write (or replace) the item's search document: weighted full text + embedding.

    A document built from an older analysis version never replaces a newer one, and a document is
    never moved to another tenant.
    """
    session.execute(
        _UPSERT,
        {
            "item_id": item.id,
            "user_id": item.user_id,
            "analysis_version": analysis_version,
            "category": document.category,
            "content": document.embedded_text,
            "a": document.weight_a,
            "b": document.weight_b,
            "c": document.weight_c,
            "d": document.weight_d,
            "embedding": "[" + ",".join(f"{x:.7g}" for x in vector) + "]",
            "embedding_model": model,
        },
    )


def _mark_ready(session: Session, item: Item, generation: int) -> None:
    if item.generation == generation:
        transition(
            session,
            item,
            from_statuses=(ItemStatus.INDEXING,),
            to=ItemStatus.READY,
            ready_at=func.now(),
            failure_stage=None,
            failure_reason=None,
        )
