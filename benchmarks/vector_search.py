"""Vector search at scale: recall@10 and latency of the tenant-filtered HNSW search vs an exact
scan, with index build time and size, on an embedded PostgreSQL + pgvector.

    uv run python -m benchmarks.vector_search [--sizes 100000x1024,200000x384] [--tenants 10]
        [--ef-sweep 100,200] [--merge]

For each size: N unit vectors (clustered, like real embeddings: N/100 topic centres plus noise)
spread over ``--tenants`` users, loaded with binary COPY into a table shaped like
``search_documents`` (user_id, embedding vector(d)), the same HNSW index as the migration
(``vector_cosine_ops``, m=16, ef_construction=64), then queries (fresh points from the same
distribution, each for a random tenant) run through the SQL and settings of
``runtime.domain.search.semantic_ranked``'s index path: ``hnsw.iterative_scan = relaxed_order``,
``hnsw.ef_search`` = ``hnsw_ef_search(fetch, 1 / tenants)`` (wider for a tenant holding less of
the table), ``hnsw.max_scan_tuples`` from the settings, fetch
``max(40, 4 x depth)`` nearest within the tenant, re-sort exactly, keep 10 (depth = 11, a
10-result page plus one). Recall@10 is against the exact top 10 within the tenant (numpy);
the exact SQL scan (the alternative, also what the app uses for a tenant with <= 5,000
documents) is timed on the same queries.

Target: recall@10 >= 0.95 at p95 <= 20 ms. The issue asks for 1,000,000 x 384; the default here
is smaller so the run fits a few minutes on 2 CPUs - pass --sizes 1000000x384 for the full size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, median, percentile, table, verdict, write_results
from runtime.config import get_settings
from runtime.domain.search import HNSW_MIN_EF_SEARCH, HNSW_OVERFETCH, hnsw_ef_search
from runtime.local.postgres import LocalPostgres

TARGET_RECALL = 0.95
TARGET_P95_MS = 20.0
K = 10
DEPTH = K + 1
FETCH = max(HNSW_MIN_EF_SEARCH, DEPTH * HNSW_OVERFETCH)

HNSW_SQL = """
WITH nearest AS MATERIALIZED (
    SELECT d.id, d.embedding <=> %(q)s AS distance FROM bench_documents d
    WHERE d.user_id = %(u)s ORDER BY d.embedding <=> %(q)s LIMIT %(fetch)s
)
SELECT id FROM nearest ORDER BY distance, id LIMIT %(k)s
"""
EXACT_SQL = """
WITH scored AS MATERIALIZED (
    SELECT d.id, d.embedding <=> %(q)s AS distance FROM bench_documents d
    WHERE d.user_id = %(u)s
)
SELECT id FROM scored ORDER BY distance, id LIMIT %(k)s
"""


def clustered(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    points = centres[picks] + rng.standard_normal((n, dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def run_size(
    pg: LocalPostgres,
    n: int,
    dim: int,
    tenants: int,
    queries: int,
    seed: int,
    sweep: tuple[int, ...] = (),
) -> dict:
    import psycopg
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(10, n // 100), dim), dtype=np.float32) / np.sqrt(dim)
    owners = rng.integers(0, tenants, n)
    dsn = pg.url("vbench").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS bench_documents")
        conn.execute(
            f"CREATE TABLE bench_documents (id bigint PRIMARY KEY, user_id text NOT NULL, "
            f"category text, "
            f"embedding vector({dim}) NOT NULL)"
        )
        started = time.perf_counter()
        vectors = np.empty((n, dim), np.float32)
        with conn.cursor().copy(
            "COPY bench_documents (id, user_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "vector"])
            for start in range(0, n, 20_000):
                chunk = clustered(rng, min(20_000, n - start), dim, centres)
                vectors[start : start + len(chunk)] = chunk
                for i, vector in enumerate(chunk, start):
                    copy.write_row((i, f"user-{owners[i]:03d}", vector))
        load_s = time.perf_counter() - started
        conn.execute("CREATE INDEX ON bench_documents (user_id, category)")
        conn.execute("VACUUM ANALYZE bench_documents")
        conn.execute("SET maintenance_work_mem = '4GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        conn.execute(
            "CREATE INDEX bench_hnsw ON bench_documents USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        build_s = time.perf_counter() - started
        index_mb = conn.execute("SELECT pg_relation_size('bench_hnsw')").fetchone()[0] / 1e6
        table_mb = (
            conn.execute(
                "SELECT pg_total_relation_size('bench_documents')"
                " - pg_indexes_size('bench_documents')"
            ).fetchone()[0]
            / 1e6
        )
        conn.execute("VACUUM ANALYZE bench_documents")

        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        ef_search = hnsw_ef_search(FETCH, 1.0 / tenants)  # as the app sets it for this tenant
        conn.execute(f"SET hnsw.ef_search = {ef_search}")
        conn.execute(f"SET hnsw.max_scan_tuples = {get_settings().search_hnsw_max_scan_tuples}")
        qs = clustered(rng, queries, dim, centres)
        users = rng.integers(0, tenants, queries)
        first = {"q": qs[0], "u": f"user-{users[0]:03d}", "fetch": FETCH, "k": K}

        def uses_hnsw() -> bool:
            plan = conn.execute("EXPLAIN " + HNSW_SQL, first).fetchall()
            return any("bench_hnsw" in r[0] for r in plan)

        planner_hnsw = uses_hnsw()
        # The planner may prefer the (user_id, category) index + a sort (an exact scan of the
        # tenant) for a 1-in-N tenant; measure the HNSW path itself as well by discouraging
        # the sort and the bitmap scan, and the query as planned.
        conn.execute("SET enable_sort = off")
        conn.execute("SET enable_bitmapscan = off")
        forced_hnsw = uses_hnsw()
        hnsw_ms, exact_ms, recalls, planned_ms, planned_recalls = [], [], [], [], []
        for i in range(min(10, queries)):  # warm the cache
            conn.execute(
                HNSW_SQL, {"q": qs[i], "u": f"user-{users[i]:03d}", "fetch": FETCH, "k": K}
            )
        for q, u in zip(qs, users, strict=True):
            mine = np.flatnonzero(owners == u)
            truth = set(mine[np.argsort(-(vectors[mine] @ q), kind="stable")[:K]].tolist())
            params = {"q": q, "u": f"user-{u:03d}", "fetch": FETCH, "k": K}
            started = time.perf_counter()
            got = [r[0] for r in conn.execute(HNSW_SQL, params).fetchall()]
            hnsw_ms.append((time.perf_counter() - started) * 1000)
            conn.execute("RESET enable_sort")
            conn.execute("RESET enable_bitmapscan")
            started = time.perf_counter()
            conn.execute(EXACT_SQL, params).fetchall()
            exact_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            planned = [r[0] for r in conn.execute(HNSW_SQL, params).fetchall()]
            planned_ms.append((time.perf_counter() - started) * 1000)
            planned_recalls.append(len(truth & set(planned)) / K)
            conn.execute("SET enable_sort = off")
            conn.execute("SET enable_bitmapscan = off")
            recalls.append(len(truth & set(got)) / K)
        sweep_results = []
        for ef in sweep:  # a larger ef_search (and fetch): the recall/latency trade-off
            conn.execute(f"SET hnsw.ef_search = {ef}")
            ms, hits = [], []
            for q, u in zip(qs, users, strict=True):
                mine = np.flatnonzero(owners == u)
                truth = set(mine[np.argsort(-(vectors[mine] @ q), kind="stable")[:K]].tolist())
                params = {"q": q, "u": f"user-{u:03d}", "fetch": ef, "k": K}
                started = time.perf_counter()
                got = [r[0] for r in conn.execute(HNSW_SQL, params).fetchall()]
                ms.append((time.perf_counter() - started) * 1000)
                hits.append(len(truth & set(got)) / K)
            sweep_results.append(
                {
                    "ef_search": ef,
                    "recall_at_10": round(float(np.mean(hits)), 4),
                    "p50_ms": round(median(ms), 2),
                    "p95_ms": round(percentile(ms, 95), 2),
                }
            )
            print(sweep_results[-1], flush=True)
        conn.execute("DROP TABLE bench_documents")
    recall = float(np.mean(recalls))
    p95 = percentile(hnsw_ms, 95)
    return {
        "vectors": n,
        "dimension": dim,
        "tenants": tenants,
        "per_tenant": n // tenants,
        "queries": queries,
        "load_s": round(load_s, 1),
        "index_build_s": round(build_s, 1),
        "index_mb": round(index_mb, 1),
        "table_mb": round(table_mb, 1),
        "planner_picks_hnsw": planner_hnsw,
        "hnsw_forced_plan_uses_index": forced_hnsw,
        "as_planned": {
            "recall_at_10": round(float(np.mean(planned_recalls)), 4),
            "p50_ms": round(median(planned_ms), 2),
            "p95_ms": round(percentile(planned_ms, 95), 2),
        },
        "ef_search": ef_search,
        "fetch": FETCH,
        "recall_at_10": round(recall, 4),
        "min_recall": min(recalls),
        "hnsw_ms": {
            "p50": round(median(hnsw_ms), 2),
            "p95": round(p95, 2),
            "p99": round(percentile(hnsw_ms, 99), 2),
        },
        "exact_ms": {"p50": round(median(exact_ms), 2), "p95": round(percentile(exact_ms, 95), 2)},
        "meets_target": recall >= TARGET_RECALL and p95 <= TARGET_P95_MS,
        "ef_sweep": sweep_results,
    }


AS_PLANNED = """
**As planned by PostgreSQL.** The HNSW columns measure the index path itself. For the app's
query PostgreSQL may instead choose the tenant's (user_id, category) index plus a sort, i.e. an
exact scan: recall 1.0, but its latency grows with the tenant's size (the "as planned" column;
at 10,000 1024-d documents in one tenant it misses the 20 ms target). `runtime.domain.search`
already scans exactly up to 5,000 documents per user; above that, if the planner still picks
the exact path, `SET LOCAL enable_sort = off` inside the search transaction forces the index.
"""
ISSUE_SIZES = ((100_000, 1024), (1_000_000, 384))


def sweep_note(runs: list[dict]) -> str:
    lines = [
        f"- {r['vectors']:,} x {r['dimension']}-d, ef_search {s['ef_search']}: recall@10 "
        f"{s['recall_at_10']:.3f}, p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
        for r in runs
        for s in r.get("ef_sweep", [])
    ]
    if not lines:
        return ""
    return (
        "\n**ef_search.** The app's value per run is in the settings line above "
        "(`hnsw_ef_search`: fetch x 1.8 / sqrt(the tenant's share)). The same index with other "
        "values (and fetch = ef_search):\n\n" + "\n".join(lines) + "\n"
    )


def missing_note(runs: list[dict]) -> str:
    """Says which of the issue's sizes this results file does not hold, and why."""
    done = {(r["vectors"], r["dimension"]) for r in runs}
    missing = [f"{n:,} x {d}-d" for n, d in ISSUE_SIZES if (n, d) not in done]
    if not missing:
        return ""
    builds = ", ".join(
        f"{r['vectors']:,} x {r['dimension']}-d in {r['index_build_s']:.0f} s" for r in runs
    )
    return (
        f"\n**Not measured here: {', '.join(missing)}** (the issue's size). The default run is "
        f"kept to minutes on this 2-CPU machine (index builds: {builds}); run "
        "`python -m benchmarks.vector_search --sizes 1000000x384 --merge` for it.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        default="100000x1024,200000x384",
        help="comma-separated NxD (full: 100000x1024,1000000x384)",
    )
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--ef-sweep", default="100,200", help="also measure these hnsw.ef_search values"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", action="store_true", help="keep the other sizes already in the results file"
    )
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",") if s]
    runs = []
    sweep = tuple(int(x) for x in args.ef_sweep.split(",") if x)
    with tempfile.TemporaryDirectory(prefix="vbench-") as scratch:
        pg = LocalPostgres(Path(scratch) / "pg").start()
        try:
            pg.create_database("vbench")
            for n, dim in sizes:
                print(f"{n} x {dim}-d ...", flush=True)
                runs.append(run_size(pg, n, dim, args.tenants, args.queries, args.seed, sweep))
                print(runs[-1], flush=True)
        finally:
            pg.stop()
    previous = args.out / "vector_search.json"
    extra = {}
    if args.merge and previous.exists():
        if not runs:  # nothing new: re-render the stored results, keeping their date
            extra["measured_at"] = json.loads(previous.read_text())["measured_at"]
        measured = {(r["vectors"], r["dimension"]) for r in runs}
        kept = [
            r
            for r in json.loads(previous.read_text())["runs"]
            if (r["vectors"], r["dimension"]) not in measured
        ]
        runs = sorted(kept + runs, key=lambda r: (-r["dimension"], r["vectors"]))
    rows = [
        [
            f"{r['vectors']:,} x {r['dimension']}-d "
            f"({r['tenants']} tenants of {r['per_tenant']:,})",
            f"{r['recall_at_10']:.3f}",
            f"{r['hnsw_ms']['p50']:.1f} / {r['hnsw_ms']['p95']:.1f}",
            f"{r['exact_ms']['p50']:.1f} / {r['exact_ms']['p95']:.1f}",
            f"{r['exact_ms']['p95'] / r['hnsw_ms']['p95']:.1f}x",
            f"{'HNSW' if r['planner_picks_hnsw'] else 'exact (tenant index + sort)'}: "
            f"{r['as_planned']['recall_at_10']:.3f} / {r['as_planned']['p95_ms']:.1f} ms",
            f"{r['index_build_s']:.0f} s",
            f"{r['index_mb']:.0f} MB",
            verdict(r["meets_target"]),
        ]
        for r in runs
    ]
    markdown = (
        "### Vector search (tenant-filtered HNSW vs exact scan)\n\n"
        + table(
            [
                "vectors",
                "recall@10",
                "HNSW p50 / p95 (ms)",
                "exact p50 / p95 (ms)",
                "exact / HNSW (p95)",
                "app query as planned: path, recall / p95",
                "index build",
                "index size",
                f"target recall >= {TARGET_RECALL}, p95 <= {TARGET_P95_MS:.0f} ms",
            ],
            rows,
        )
        + "\nSettings as in `runtime.domain.search`: iterative scan relaxed_order, "
        "ef_search "
        + ", ".join(f"{r['ef_search']} ({r['vectors']:,})" for r in runs)
        + f", fetch {FETCH}; HNSW m=16, ef_construction=64; index built "
        "with maintenance_work_mem >= 2GB (the graph fits in memory) and 1 parallel worker on "
        "2 CPUs. Vectors are clustered "
        "synthetic unit vectors (N/100 centres + noise); uniformly random vectors are harder "
        "for HNSW than real embeddings.\n" + sweep_note(runs) + AS_PLANNED + missing_note(runs)
    )
    write_results(
        args.out,
        "vector_search",
        {
            "targets": {"recall_at_10": TARGET_RECALL, "p95_ms": TARGET_P95_MS},
            "issue_sizes": ["100000x1024", "1000000x384"],
            "runs": runs,
            "meets_targets": all(r["meets_target"] for r in runs),
            **extra,
        },
        markdown,
    )


if __name__ == "__main__":
    main()
