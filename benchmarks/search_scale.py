"""Search latency as one user's collection grows: p50/p95 per mode at 1k, 10k, 100k items.

    uv run python -m benchmarks.search_scale                       # 1,000 and 10,000 items
    uv run python -m benchmarks.search_scale --sizes 1000,10000,100000

Starts `collections dev` once (local mode, offline embedder), creates one user, and grows that
user's collection step by step with the same synthetic, golden-derived items as
``benchmarks.api_load`` (bulk COPY, the embed stage's tsvector and a vector near the offline
embedding of the analysis it came from). At each size it runs every search mode with one client
for ``--duration`` seconds (the golden queries, 20 results) and reports p50/p95 latency over
HTTP: the curve shows how each mode's cost grows with the user's collection.

Target (the 100,000-item point): p95 <= 50 ms in every mode. Client, API, PostgreSQL and the
workers share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from benchmarks._common import DATASETS, RESULTS, table, verdict, write_results
from benchmarks._dev import start_dev
from benchmarks.api_load import PASSWORD, SEARCH_MODES, golden, run_cell, seed

TARGET_P95_MS = 50.0
TARGET_ITEMS = 100_000
LIMITS = """
**What limits it, and what was tried.** Before this change keyword search counted each term's
document frequency with a scan and scored every matching document: 298/586 ms (p50/p95) at
1,000 items and 3,365/4,664 ms at 10,000 (hybrid 765/963 and 4,162/4,865), i.e. x11 per x10
items. Now document frequencies come from per-user statistics kept by triggers, and at most
`KEYWORD_WINDOW` (500) matching documents are scored, taken from the GIN index in stages (every
term; all but one; each term, rarest first): growth from 10,000 to 100,000 items is x2 instead
of x10. What remains at 100,000 items is the index work per stage: the GIN index is
(user_id, tsv), so each stage's bitmap scan intersects the user's whole posting list (100,000
entries here) with the terms' lists, and a query whose best stages are small runs up to
2n + 1 of them; scoring the window (decompressing each tsvector once) is 10-25 ms. Semantic and
hybrid also embed the query on the API's CPU (MiniLM in numpy: ~40 ms p50 on this loaded
machine), which alone is most of the 50 ms budget.

Tried on the way, measured on the 10,000-item collection (SQL only, 49 golden queries, best of
3, machine load average 3-7): exact scoring with the statistics 544/1,329 ms (p50/p95); a
500-document window with the old scoring (three `ts_filter` per document) and stages by rarity
only: 56/83 ms, but only 24 of 49 top-21 lists identical to the exact ranking; adding
"all but one term" stages, threshold pruning and weight-restricted queries instead of
`ts_filter`: 87/174 ms (each `@@` decompressed the tsvector again), then 48/83 ms decompressing
once; telling the index to exclude earlier stages (`stage & !earlier`): the planner switched
some stages to the user's btree index plus a filter over all 10,000 documents (52/279 ms), so
the exclusion is a filter on the decompressed rows instead: 36/71 ms; a 300-document window
instead of 500: 35/63 ms (no material gain: the cost is per stage, not per document). With the
window as large as the matches the ranking is identical to the exact one for all 49 queries,
and the retrieval evaluation's figures are unchanged.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000", help="items held by the one user")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per mode and size")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if not (DATASETS / "golden").is_dir():
        raise SystemExit(f"golden analyses not found at {DATASETS / 'golden'}")
    _, queries = golden(DATASETS / "golden")
    points = []
    with tempfile.TemporaryDirectory(prefix="searchscale-") as scratch:
        product = start_dev(Path(scratch), {"COLLECTIONS_API_RATE_LIMIT_PER_MINUTE": "0"})
        try:
            sub, token = product.user("scale@collections.local", PASSWORD)
            tokens = {sub: token}
            items: dict[str, list[str]] = {sub: []}
            held = 0
            loads: list[str] = []
            for step, size in enumerate(sizes):
                started = time.perf_counter()
                added = seed(product, [sub], size - held, args.seed + step)
                items[sub] += added[sub]
                held = size
                print(f"{size:,} items ({time.perf_counter() - started:.0f} s)", flush=True)
                loads.append(", ".join(f"{x:.2f}" for x in os.getloadavg()))
                for mode in SEARCH_MODES:
                    cell = asyncio.run(
                        run_cell(product.api_url, mode, 1, args.duration, tokens, items, queries)
                    )
                    cell["items"] = size
                    print(cell, flush=True)
                    points.append(cell)
        finally:
            product.stop()
    at_target = [p for p in points if p["items"] >= TARGET_ITEMS]
    met = (
        all(p["p95_ms"] <= TARGET_P95_MS and not p["errors"] for p in at_target)
        if at_target
        else None
    )
    rows = [
        [
            f"{p['items']:,}",
            p["endpoint"],
            p["p50_ms"],
            p["p95_ms"],
            p["requests"],
            sum(p["errors"].values()) or "",
            verdict(p["p95_ms"] <= TARGET_P95_MS) if p["items"] >= TARGET_ITEMS else "",
        ]
        for p in points
    ]
    growth = []
    for mode in SEARCH_MODES:
        curve = [p for p in points if p["endpoint"] == mode]
        if len(curve) >= 2 and curve[0]["p50_ms"]:
            growth.append(
                f"{mode} p50 x{curve[-1]['p50_ms'] / curve[0]['p50_ms']:.1f} from "
                f"{curve[0]['items']:,} to {curve[-1]['items']:,} items"
            )
    markdown = (
        f"### Search as one user's collection grows (1 client, {args.duration:g} s per point, "
        f"local mode, one uvicorn process, offline embedder; load average {load_before} before "
        f"the run, {' / '.join(loads)} before each size)\n\n"
        + table(
            ["items", "mode", "p50 (ms)", "p95 (ms)", "requests", "errors", "p95 <= 50 ms"],
            rows,
        )
        + "\nGrowth: "
        + ("; ".join(growth) or "one size only")
        + ". Semantic and hybrid include embedding the query (MiniLM on the API's CPU)."
        + (
            ""
            if at_target
            else f" The {TARGET_ITEMS:,}-item point was not run here (`--sizes ...,100000`)."
        )
        + "\n"
        + LIMITS
    )
    write_results(
        args.out,
        "search_scale",
        {
            "sizes": sizes,
            "duration_s": args.duration,
            "target_items": TARGET_ITEMS,
            "target_p95_ms": TARGET_P95_MS,
            "load_average_before": load_before,
            "load_average_per_size": loads,
            "meets_target": met,
            "points": points,
        },
        markdown,
    )


if __name__ == "__main__":
    main()
