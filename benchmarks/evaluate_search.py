"""Retrieval evaluation of the search modes on a corpus of analyses and graded queries.

    uv run python -m benchmarks.evaluate_search [--analyses PATH] [--queries PATH]
        [--embedder local|voyage] [--out benchmarks/results] [--no-sweep]

Defaults: ``../shared/datasets/golden/golden_analyses.json`` and ``queries.json`` (relative to the
project root), the offline embedder, results in ``benchmarks/results`` (``search_eval.json`` and
``search_eval.md``).

What it does: starts a throwaway PostgreSQL + pgvector in a temporary folder, migrates it,
creates one item + analysis per record for one user, indexes each through the real document
builder (``runtime.domain.documents.build_document``), the configured embedder and
``upsert_search_document`` (what the pipeline's embed stage runs), then runs every query in every
mode through ``runtime.domain.search.search`` at the default thresholds (the settings), asking for
10 results.

Metrics, over the queries that have expected items (graded ``high`` = 3, ``medium`` = 2):
- MRR: mean of 1 / rank of the first relevant result (0 if none in the 10 returned);
- P@1: share of queries whose first result is relevant;
- R@k: mean share of a query's relevant items found in the first k results;
- nDCG@5: DCG@5 = sum over the first 5 results of grade / log2(rank + 1), divided by the DCG@5
  of the ideal ordering of the query's relevant items (linear graded gain);
and, over the queries whose right answer is nothing, the true-negative rate: the share answered
with an empty list. Latency is the wall time of one ``search`` call (query embedding included),
p50/p95 per mode. A threshold sweep (each mode's metrics as its threshold varies, the query
embeddings cached) shows how the default thresholds were chosen.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
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


class CachedEmbedder:
    """Wraps an embedder, remembering query embeddings (for the threshold sweep only)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.provider, self.model, self.dimension = inner.provider, inner.model, inner.dimension
        self.embed_query = lru_cache(maxsize=None)(inner.embed_query)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)


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


def run_mode(
    session: Any, embedder: Any, queries: list[Query], mode: Any, thresholds: Any = None
) -> tuple[list[tuple[Query, list[str]]], list[float], list[dict[str, Any]]]:
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
                "reciprocal_rank": round(reciprocal_rank(ranked, q.relevant), 4)
                if q.relevant
                else None,
            }
        )
    return runs, latencies, details


SWEEP = {
    "keyword": [0.0, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8],
    "semantic": [-1.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6],
    "hybrid": [0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7],
}


def sweep(session: Any, embedder: Any, queries: list[Query], defaults: Any) -> dict[str, Any]:
    """Each mode's metrics as its own threshold varies (the other thresholds at default)."""
    from runtime.domain.search import SearchMode

    cached = CachedEmbedder(embedder)
    out: dict[str, Any] = {}
    for mode in SearchMode:
        rows = []
        for value in SWEEP[mode.value]:
            thresholds = replace(defaults, **{mode.value: value})
            runs, _, _ = run_mode(session, cached, queries, mode, thresholds)
            rows.append({"threshold": value, **summarize(runs)})
        out[mode.value] = rows
    return out


def evaluate(
    analyses_path: Path, queries_path: Path, embedder_kind: str, *, with_sweep: bool = True
) -> dict[str, Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    records = load_analyses(analyses_path)
    queries = load_queries(queries_path)

    from runtime.config import get_settings
    from runtime.db.migrate import upgrade
    from runtime.domain.search import SearchMode, Thresholds
    from runtime.local.postgres import LocalPostgres
    from runtime.providers import factory

    # The embedder kind decides the vector column's dimension when the schema is created.
    saved = os.environ.get("COLLECTIONS_EMBEDDER")
    os.environ["COLLECTIONS_EMBEDDER"] = embedder_kind
    get_settings.cache_clear()
    factory.reset()
    try:
        settings = get_settings()
        embedder = factory.get_embedder(settings)
        thresholds = Thresholds.from_settings(settings)
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
                    # judged items that are not in the corpus
                    missing = {i for q in queries for i in q.relevant} - set(item_ids)
                    embedder.embed_query("warm up")  # load the model before timing
                    modes: dict[str, Any] = {}
                    per_query: dict[str, Any] = {}
                    for mode in SearchMode:
                        runs, latencies, details = run_mode(session, embedder, queries, mode)
                        modes[mode.value] = {
                            **summarize(runs),
                            "latency_ms_p50": round(percentile(latencies, 50), 1),
                            "latency_ms_p95": round(percentile(latencies, 95), 1),
                        }
                        per_query[mode.value] = details
                    sweeps = sweep(session, embedder, queries, thresholds) if with_sweep else {}
                    session.rollback()
                engine.dispose()
            finally:
                server.stop()
    finally:
        if saved is None:
            os.environ.pop("COLLECTIONS_EMBEDDER", None)
        else:
            os.environ["COLLECTIONS_EMBEDDER"] = saved
        get_settings.cache_clear()
        factory.reset()

    return {
        "dataset": {
            "analyses": _display_path(analyses_path),
            "queries": _display_path(queries_path),
            "items": len(item_ids),
            "queries_total": len(queries),
            "judged_items_missing_from_corpus": len(missing),
        },
        "embedder": f"{embedder.provider}/{embedder.model} ({embedder.dimension}-d)",
        "thresholds": {
            "keyword": thresholds.keyword,
            "semantic": thresholds.semantic,
            "hybrid": thresholds.hybrid,
        },
        "results_per_query": RESULTS_PER_QUERY,
        "index_seconds": round(index_seconds, 2),
        "modes": modes,
        "baseline": BASELINE,
        "threshold_sweep": sweeps,
        "per_query": per_query,
    }


def _display_path(path: Path) -> str:
    """The path relative to the project root when it is near it (no machine-specific paths)."""
    return os.path.relpath(path.resolve(), ROOT)


# =============================================================================================
# Report
# =============================================================================================


def markdown(result: dict[str, Any]) -> str:
    t = result["thresholds"]
    lines = [
        "# Search evaluation",
        "",
        "Produced by `uv run python -m benchmarks.evaluate_search` (see that module for the "
        "metric definitions).",
        "",
        f"Corpus: {result['dataset']['items']} items, {result['dataset']['queries_total']} "
        f"queries; embedder `{result['embedder']}`; default thresholds keyword "
        f"{t['keyword']}, semantic {t['semantic']}, hybrid {t['hybrid']}; "
        f"{result['results_per_query']} results asked per query.",
        "",
        "| mode | MRR | P@1 | R@5 | R@10 | nDCG@5 | no-result TN | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, m in result["modes"].items():
        lines.append(
            f"| {mode} | {m['mrr']:.3f} | {m['p@1']:.3f} | {m['r@5']:.3f} | {m['r@10']:.3f} | "
            f"{m['ndcg@5']:.3f} | {m['true_negatives']}/{m['no_result_queries']} | "
            f"{m['latency_ms_p50']:.1f} | {m['latency_ms_p95']:.1f} |"
        )
    lines += [
        "",
        "Predecessor's baseline on the same set (its embedder: voyage-3.5-lite, 1024-d):",
        "",
        "| search | MRR | P@1 | R@5 | nDCG@5 | no-result TN |",
        "|---|---|---|---|---|---|",
    ]
    for name, b in result["baseline"].items():
        lines.append(
            f"| {name} | {b['mrr']:.3f} | {b['p@1']:.3f} | {b['r@5']:.3f} | "
            f"{b['ndcg@5']:.3f} | {b['tn']} |"
        )
    if result.get("threshold_sweep"):
        lines += [
            "",
            "Threshold sweep: each mode's own threshold varied, the others at default (hybrid's "
            "threshold is the cosine similarity a meaning-only answer needs when no keyword "
            "result passes; see runtime/domain/search.py):",
            "",
        ]
        for mode, rows in result["threshold_sweep"].items():
            lines += [
                f"| {mode} threshold | MRR | nDCG@5 | R@10 | no-result TN |",
                "|---|---|---|---|---|",
            ]
            for r in rows:
                lines.append(
                    f"| {r['threshold']} | {r['mrr']:.3f} | {r['ndcg@5']:.3f} | "
                    f"{r['r@10']:.3f} | {r['true_negatives']}/{r['no_result_queries']} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=Path, default=DEFAULT_GOLDEN / "golden_analyses.json")
    parser.add_argument("--queries", type=Path, default=DEFAULT_GOLDEN / "queries.json")
    parser.add_argument("--embedder", choices=("local", "voyage"), default="local")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-sweep", action="store_true", help="skip the threshold sweep")
    args = parser.parse_args(argv)
    for path in (args.analyses, args.queries):
        if not path.exists():
            print(
                f"evaluation data not found at {path} (pass --analyses / --queries)",
                file=sys.stderr,
            )
            return 2
    result = evaluate(args.analyses, args.queries, args.embedder, with_sweep=not args.no_sweep)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / "search_eval.md").write_text(report)
    print(report)
    print(f"written: {args.out / 'search_eval.json'}, {args.out / 'search_eval.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
