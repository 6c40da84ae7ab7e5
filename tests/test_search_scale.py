"""Search that stays bounded as a collection grows, on real PostgreSQL: the keyword statistics the
database keeps per user (document frequencies, collection size) stay equal to a recount through
inserts, re-analyses, deletes and truncation; the keyword candidate window finds the exact
ranking where the best documents are not the first ones the index returns; IDF estimates for
prefixes, phrases and alternatives in a large collection; the HNSW search width per tenant."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from runtime.db.models import Item
from runtime.domain import search as search_module
from runtime.domain.analysis import Analysis
from runtime.domain.documents import build_document
from runtime.domain.embed_stage import upsert_search_document
from runtime.domain.search import (
    HNSW_MAX_EF_SEARCH,
    HNSW_MIN_EF_SEARCH,
    SearchFilters,
    SearchMode,
    hnsw_ef_search,
    keyword_ranked,
    keyword_statistics,
    parse_keyword_query,
    search,
)
from tests.test_search import EVERYTHING, HashEmbedder, add_items, all_pages


@pytest.fixture(scope="module")
def embedder(embedding_dimension: int) -> HashEmbedder:
    return HashEmbedder(embedding_dimension)


def kept(session: Session) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    lexemes = {
        (user, lexeme): documents
        for user, lexeme, documents in session.execute(
            text("SELECT user_id, lexeme, documents FROM search_lexemes WHERE documents <> 0")
        )
    }
    sizes = {
        user: documents
        for user, documents in session.execute(
            text("SELECT user_id, documents FROM search_collections WHERE documents <> 0")
        )
    }
    return lexemes, sizes


def recounted(session: Session) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    lexemes = {
        (user, lexeme): documents
        for user, lexeme, documents in session.execute(
            text(
                "SELECT d.user_id, l.lexeme, count(*) FROM search_documents d "
                "CROSS JOIN LATERAL unnest(tsvector_to_array(d.tsv)) AS l(lexeme) "
                "GROUP BY d.user_id, l.lexeme"
            )
        )
    }
    sizes = {
        user: documents
        for user, documents in session.execute(
            text("SELECT user_id, count(*) FROM search_documents GROUP BY user_id")
        )
    }
    return lexemes, sizes


def reanalyse(session: Session, item_id: uuid.UUID, headline: str, version: int) -> None:
    item = session.get(Item, item_id)
    assert item is not None
    analysis = Analysis.model_validate(
        {"category": "Food", "subcategories": [], "headline": headline, "summary": ""}
    ).model_dump(mode="json")
    document = build_document(analysis)
    vector = HashEmbedder(384).embed_documents([document.embedded_text])[0]
    upsert_search_document(session, item, version, document, vector, "test/hash-bow")
    session.flush()


def test_statistics_equal_a_recount_through_every_change(
    session: Session, embedder: HashEmbedder
) -> None:
    alice = add_items(
        session,
        embedder,
        "alice",
        [
            {"headline": "Ramen in Fukuoka", "summary": "Tonkotsu ramen, solo booths."},
            {"headline": "Fukuoka castle ruins", "summary": "Cherry blossoms in spring."},
            {"headline": "Hot spring in Beppu", "summary": "Steam rising from the spring."},
        ],
    )
    add_items(session, embedder, "bob", [{"headline": "Ramen in Sapporo", "summary": "Miso."}])
    lexemes, sizes = kept(session)
    assert sizes == {"alice": 3, "bob": 1}
    assert lexemes[("alice", "ramen")] == 1 and lexemes[("alice", "fukuoka")] == 2
    assert lexemes[("bob", "ramen")] == 1
    assert (lexemes, sizes) == recounted(session)

    # Re-analysis replaces the document's words; a stale version changes nothing.
    reanalyse(session, alice[0], "Udon in Takamatsu", version=2)
    reanalyse(session, alice[1], "Ignored stale analysis", version=0)
    lexemes, sizes = kept(session)
    assert ("alice", "udon") in lexemes and ("alice", "ignor") not in lexemes
    assert lexemes[("alice", "fukuoka")] == 1
    assert (lexemes, sizes) == recounted(session)

    # Deleting an item cascades to its document, and to the statistics.
    session.execute(text("DELETE FROM items WHERE id = :id"), {"id": alice[2]})
    lexemes, sizes = kept(session)
    assert sizes == {"alice": 2, "bob": 1}
    assert ("alice", "beppu") not in lexemes
    assert (lexemes, sizes) == recounted(session)

    session.execute(text("TRUNCATE search_documents, analyses, items CASCADE"))
    assert kept(session) == ({}, {})


def test_the_window_finds_the_exact_ranking_when_the_best_come_last(
    session: Session, embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Many documents share one common word and are written first, the few holding every query
    # word (and those holding two) last: a window taking documents in index order would miss them.
    filler = [
        {"headline": f"Street number {n} in Japan", "summary": "An ordinary day."}
        for n in range(60)
    ]
    pairs = [{"headline": f"Ramen stand {n}", "summary": "Fukuoka nights."} for n in range(4)]
    best = [{"headline": f"Fukuoka ramen in Japan, stall {n}"} for n in range(3)]
    add_items(session, embedder, "carol", filler + pairs)
    best_ids = add_items(session, embedder, "carol", best)
    query = parse_keyword_query(session, "ramen fukuoka japan")

    def ranked(window: int, threshold: float, depth: int) -> list[tuple[uuid.UUID, float]]:
        monkeypatch.setattr(search_module, "KEYWORD_WINDOW", window)
        hits = keyword_ranked(
            session,
            user_id="carol",
            query=query,
            filters=SearchFilters(),
            threshold=threshold,
            depth=depth,
        )
        return [(item_id, round(score, 9)) for item_id, score, _ in hits]

    matches = session.execute(
        text(
            "SELECT count(*) FROM search_documents WHERE user_id = 'carol' "
            "AND tsv @@ to_tsquery('english', 'ramen | fukuoka | japan')"
        )
    ).scalar_one()
    assert matches == 67
    exact = ranked(window=1000, threshold=0.0, depth=10)
    assert {item_id for item_id, _ in exact[:3]} == set(best_ids)
    # A window of 8 holds 8 of the 67 matches, yet gives the same top 7.
    assert ranked(window=8, threshold=0.0, depth=7) == exact[:7]
    # Everything at or above a threshold the pairs reach, whatever the window.
    cut = exact[6][1] - 1e-6  # (scores are rounded above)
    assert ranked(window=7, threshold=cut, depth=50) == [hit for hit in exact if hit[1] >= cut]
    # And the window is what the search uses: the page equals the exact one.
    page = search(
        session,
        embedder,
        user_id="carol",
        query="ramen fukuoka japan",
        mode=SearchMode.KEYWORD,
        limit=3,
        thresholds=EVERYTHING,
    )
    assert [hit.item_id for hit in page.hits] == [item_id for item_id, _ in exact[:3]]


def test_negated_words_filters_and_pages_inside_the_window(
    session: Session, embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "KEYWORD_WINDOW", 5)
    add_items(
        session,
        embedder,
        "dave",
        [{"headline": f"Seoul hot pot {n}", "category": "Food"} for n in range(8)]
        + [{"headline": f"Seoul tower view {n}", "category": "Travel"} for n in range(8)],
    )
    # A window of 5 documents out of 16 matches: it is filled with what the query and the
    # filters let through, and pages of 2 cover it exactly once, in the one-page order.
    for query, filters, expected in (
        ("seoul -pot", SearchFilters(), "tower"),
        ("seoul", SearchFilters(category="food"), "pot"),
    ):
        options: dict[str, Any] = {
            "user_id": "dave",
            "query": query,
            "mode": SearchMode.KEYWORD,
            "filters": filters,
            "thresholds": EVERYTHING,
        }
        one_page = search(session, embedder, limit=20, **options).hits
        assert len(one_page) == 5 and all(expected in (hit.headline or "") for hit in one_page)
        pages = all_pages(session, embedder, 2, **options)
        assert [hit.item_id for page in pages for hit in page.hits] == [
            hit.item_id for hit in one_page
        ]


def test_document_frequencies_counted_or_estimated(
    session: Session, embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_items(
        session,
        embedder,
        "erin",
        [{"headline": "photograph of a lighthouse"}] * 3
        + [{"headline": "photography class"}] * 2
        + [{"headline": "photographer at work, photograph shown"}]
        + [{"headline": "lighthouse keeper"}] * 4,
    )
    query = parse_keyword_query(session, 'photograph "lighthouse keeper" lighthouse')
    terms = query.terms
    counted = keyword_statistics(session, "erin", terms)
    # 10 documents; the prefix photograph:* matches 6, the phrase 4, lighthouse 7.
    assert counted == (10, [6, 4, 7])
    monkeypatch.setattr(search_module, "KEYWORD_EXACT_COUNT_MAX", 5)
    total, estimated = keyword_statistics(session, "erin", terms)
    assert total == 10 and estimated[2] == 7  # one word: always its count
    # The prefix's words (photograph 4, photographi 2, photograph- forms 1): between the largest
    # and the sum; the phrase: its rarest word (keeper, 4).
    assert 4 <= estimated[0] <= 7 and estimated[1] == 4
    # Another user's documents count for nothing.
    assert keyword_statistics(session, "nobody", terms) == (0, [0, 0, 0])


def test_hnsw_search_widens_for_small_tenants_and_deep_pages() -> None:
    whole = hnsw_ef_search(44, 1.0)
    tenth = hnsw_ef_search(44, 0.1)
    assert HNSW_MIN_EF_SEARCH <= whole < tenth < hnsw_ef_search(44, 0.01)
    assert tenth >= 200  # what a 10% tenant of 1M vectors needed for recall@10 0.944
    assert hnsw_ef_search(400, 0.1) > tenth  # a deeper page
    assert hnsw_ef_search(44, 0.0) == hnsw_ef_search(10_000, 1.0) == HNSW_MAX_EF_SEARCH
    assert hnsw_ef_search(4000, 1.0) == HNSW_MAX_EF_SEARCH
