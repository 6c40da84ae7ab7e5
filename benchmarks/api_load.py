"""The HTTP API under load, in local mode with offline providers.

    uv run python -m benchmarks.api_load [--items 20000] [--users 50] [--duration 8]
    uv run python -m benchmarks.api_load --items 100000          # the issue's size

Starts `collections dev` (embedded PostgreSQL + pgvector, the AWS emulator, the API under
uvicorn, the workers) in a scratch folder on free ports, creates ``--users`` users in the
emulator's Cognito pool and seeds ``--items`` ready items for them straight into its PostgreSQL
(items + analysis v1 + search document, bulk COPY): each analysis is a golden analysis with its
list fields and summary mixed with words of other golden analyses, run through
``runtime.domain.documents.build_document`` and the same ``setweight(to_tsvector(...))`` as the
embed stage; each vector is the offline embedder's vector of the analysis it was derived from
plus noise (unit length, the schema's dimension). The HNSW index is dropped during the load and
rebuilt after, as a bulk load would.

Then, for each of list, get, keyword, semantic, hybrid and 1, 8, 32 concurrent clients
(httpx.AsyncClient, one event loop, each request as a random seeded user with its id token), it
runs for ``--duration`` seconds and reports p50/p95/p99 latency and requests/s. The API's own
per-user rate limit is switched off (it is off behind API Gateway too, which throttles there).

Target: search p95 <= 100 ms at 8 clients, throughput growing with API workers. Client, API,
PostgreSQL and the workers share this machine's CPUs; the load generator's own time is included
in the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import DATASETS, RESULTS, median, percentile, table, verdict, write_results
from benchmarks._dev import DevProduct, start_dev

TARGET_P95_MS = 100.0  # at 8 clients
SEARCH_MODES = ("keyword", "semantic", "hybrid")
ENDPOINTS = ("list", "get", *SEARCH_MODES)
PASSWORD = "Bench-passw0rd-123"
HNSW_INDEX = "search_documents_embedding_hnsw_idx"
LIST_FIELDS = ("subcategories",)
DETAIL_FIELDS = ("objects", "themes", "emotions", "vibes")


LIMITS = """
**What limits it.** Each API process is one Python event loop in which request handling, the
query embedding (MiniLM in numpy, ~40 ms on this shared CPU) and the synchronous database calls
all take turns; `collections dev` runs one per CPU (`--api-workers`), and the processes share
the machine's 2 CPUs with PostgreSQL and the load generator. Once the CPUs are busy, latency at
N clients is about N x the service time: the growth from 1 to 8 clients is queueing, which more
processes shorten only while a CPU is idle. On AWS each Lambda instance serves one request at a
time and 8 concurrent clients get 8 instances, so the 1-client column is the per-request figure
that applies there (plus API Gateway's few ms).

The seeded corpus is pessimistic for keyword search: it is built from 55 golden analyses, so a
golden query's words match a large share of each user's documents, far more than in a real,
varied collection; keyword ranking scores at most 500 of them (`KEYWORD_WINDOW`).
"""


def golden(folder: Path) -> tuple[list[dict], list[str]]:
    from runtime.domain.analysis import Analysis

    data = json.loads((folder / "golden_analyses.json").read_text())
    records = [r for r in data["golden_analyses"] if r.get("item_id")]
    analyses = [Analysis.model_validate(r).model_dump(mode="json") for r in records]
    queries = [
        q["query_text"] for q in json.loads((folder / "queries.json").read_text())["queries"]
    ]
    return analyses, queries


def synthetic_analysis(
    rng: random.Random, base: dict, others: list[dict], vocab: list[str]
) -> dict:
    """A plausible analysis: a golden one with fields mixed in from others and extra words."""
    result = copy.deepcopy(base)
    donor = rng.choice(others)
    details, donor_details = result.get("image_details") or {}, donor.get("image_details") or {}
    for key in DETAIL_FIELDS:
        if isinstance(details.get(key), list) and isinstance(donor_details.get(key), list):
            mixed = details[key] + donor_details[key]
            details[key] = rng.sample(mixed, k=min(len(mixed), max(1, len(details[key]))))
    if isinstance(result.get("subcategories"), list):
        result["subcategories"] = rng.sample(
            result["subcategories"] + (donor.get("subcategories") or []),
            k=len(result["subcategories"]),
        )
    extra = " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 16)))
    result["summary"] = f"{result.get('summary') or ''} {extra}".strip()
    return result


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def seed(
    product: DevProduct, users: list[str], count: int, seed_value: int
) -> dict[str, list[str]]:
    """Bulk-insert ``count`` ready items (+ analysis + search document) over ``users``."""
    import psycopg

    from runtime.config import Settings
    from runtime.domain.documents import TEXT_SEARCH_CONFIG, build_document
    from runtime.providers.factory import get_embedder

    analyses, _ = golden(DATASETS / "golden")
    vocab = sorted({w for a in analyses for w in (a.get("summary") or "").split() if w.isalpha()})
    documents = [build_document(a) for a in analyses]
    embedder = get_embedder(Settings())
    base_vectors = np.asarray(embedder.embed_documents([d.embedded_text for d in documents]))
    rng, nrng = random.Random(seed_value), np.random.default_rng(seed_value)
    dim = base_vectors.shape[1]
    by_user: dict[str, list[str]] = {u: [] for u in users}
    now = datetime.now(UTC)
    items, rows_analyses, staged = io.StringIO(), io.StringIO(), io.StringIO()
    for n in range(count):
        user = users[n % len(users)]
        which = rng.randrange(len(analyses))
        result = synthetic_analysis(rng, analyses[which], analyses, vocab)
        doc = build_document(result)
        vector = base_vectors[which] + nrng.standard_normal(dim) * (0.5 / np.sqrt(dim))
        vector /= np.linalg.norm(vector)
        item_id = uuid.uuid4()
        by_user[user].append(str(item_id))
        created = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
        prefix = f"users/{user}/items/{item_id}"
        derived = json.dumps(
            {
                "thumb_256": f"{prefix}/derived/thumb_256.webp",
                "thumb_1024": f"{prefix}/derived/thumb_1024.webp",
            }
        )
        items.write(
            "\t".join(
                _copy_text(v)
                for v in (
                    item_id,
                    user,
                    "ready",
                    f"IMG_{n:06d}.jpg",
                    "image/jpeg",
                    "image/jpeg",
                    900_000,
                    1170,
                    2532,
                    f"{prefix}/original",
                    derived,
                    1,
                    created,
                    created,
                    created,
                )
            )
            + "\n"
        )
        rows_analyses.write(
            "\t".join(
                _copy_text(v)
                for v in (
                    uuid.uuid4(),
                    item_id,
                    user,
                    1,
                    1,
                    json.dumps(result),
                    "bench",
                    "synthetic",
                    created,
                )
            )
            + "\n"
        )
        staged.write(
            "\t".join(
                _copy_text(v)
                for v in (
                    item_id,
                    user,
                    doc.category,
                    doc.embedded_text,
                    doc.weight_a,
                    doc.weight_b,
                    doc.weight_c,
                    doc.weight_d,
                    "[" + ",".join(f"{x:.6g}" for x in vector) + "]",
                )
            )
            + "\n"
        )
    with psycopg.connect(product.dsn(), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        index_def = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (HNSW_INDEX,)
        ).fetchone()[0]
        conn.execute("DROP INDEX search_documents_embedding_hnsw_idx")
        with conn.cursor().copy(
            "COPY items (id, user_id, status, file_name, declared_content_type, content_type, "
            "byte_size, width, height, original_key, derived_keys, generation, created_at, "
            "updated_at, ready_at) FROM STDIN"
        ) as cp:
            cp.write(items.getvalue())
        with conn.cursor().copy(
            "COPY analyses (id, item_id, user_id, version, generation, result, provider, model, "
            "created_at) FROM STDIN"
        ) as cp:
            cp.write(rows_analyses.getvalue())
        conn.execute(
            f"CREATE TEMP TABLE staged (item_id uuid, user_id text, category text, content text, "
            f"a text, b text, c text, d text, embedding vector({dim}))"
        )
        with conn.cursor().copy("COPY staged FROM STDIN") as cp:
            cp.write(staged.getvalue())
        cfg = TEXT_SEARCH_CONFIG
        conn.execute(
            "INSERT INTO search_documents (item_id, user_id, analysis_version, category, content, "
            "tsv, embedding, embedding_model) SELECT item_id, user_id, 1, category, content, "
            f"setweight(to_tsvector('{cfg}', a), 'A') || setweight(to_tsvector('{cfg}', b), 'B')"
            f" || setweight(to_tsvector('{cfg}', c), 'C')"
            f" || setweight(to_tsvector('{cfg}', d), 'D'), "
            f"embedding, '{embedder.provider}/{embedder.model}' FROM staged"
        )
        conn.execute(index_def)
        conn.execute("VACUUM ANALYZE items")
        conn.execute("VACUUM ANALYZE analyses")
        conn.execute("VACUUM ANALYZE search_documents")
    return by_user


async def run_cell(
    api_url: str,
    endpoint: str,
    clients: int,
    duration: float,
    tokens: dict[str, str],
    items: dict[str, list[str]],
    queries: list[str],
) -> dict:
    import httpx

    users = list(tokens)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=30) as client:

        def request() -> tuple[str, dict, dict]:
            user = random.choice(users)
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            if endpoint == "list":
                return "/items", {"limit": 20}, headers
            if endpoint == "get":
                return f"/items/{random.choice(items[user])}", {}, headers
            return "/search", {"q": random.choice(queries), "mode": endpoint, "limit": 20}, headers

        async def worker(deadline: float) -> None:
            while time.perf_counter() < deadline:
                path, params, headers = request()
                started = time.perf_counter()
                try:
                    response = await client.get(path, params=params, headers=headers)
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = exc.__class__.__name__
                elapsed = time.perf_counter() - started
                if status == "200":
                    latencies.append(elapsed * 1000)
                else:
                    errors[status] = errors.get(status, 0) + 1

        warm = time.perf_counter() + min(1.0, duration / 4)
        await asyncio.gather(*(worker(warm) for _ in range(clients)))
        latencies.clear()
        errors.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + duration) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {
        "endpoint": endpoint,
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(median(latencies), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per cell")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--api-workers", type=int, default=1, help="API server processes (`--api-workers`)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="api_load", help="results file name (no suffix)")
    args = parser.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    concurrency = [int(c) for c in args.clients.split(",")]
    if not (DATASETS / "golden").is_dir():
        raise SystemExit(
            f"golden analyses not found at {DATASETS / 'golden'} (COLLECTIONS_DATASETS)"
        )
    _, queries = golden(DATASETS / "golden")
    with tempfile.TemporaryDirectory(prefix="apiload-") as scratch:
        product = start_dev(
            Path(scratch),
            {"COLLECTIONS_API_RATE_LIMIT_PER_MINUTE": "0"},
            api_workers=args.api_workers,
        )
        try:
            tokens: dict[str, str] = {}
            for n in range(args.users):
                sub, token = product.user(f"bench-{n:02d}@collections.local", PASSWORD)
                tokens[sub] = token
            started = time.perf_counter()
            items = seed(product, list(tokens), args.items, args.seed)
            seed_s = time.perf_counter() - started
            print(
                f"seeded {args.items} items over {args.users} users in {seed_s:.0f} s", flush=True
            )
            cells = []
            for endpoint in ENDPOINTS:
                for clients in concurrency:
                    cell = asyncio.run(
                        run_cell(
                            product.api_url,
                            endpoint,
                            clients,
                            args.duration,
                            tokens,
                            items,
                            queries,
                        )
                    )
                    print(cell, flush=True)
                    cells.append(cell)
        finally:
            product.stop()
    at8 = [c for c in cells if c["endpoint"] in SEARCH_MODES and c["clients"] == 8]
    met = bool(at8) and all(c["p95_ms"] <= TARGET_P95_MS and not c["errors"] for c in at8)
    rows = [
        [
            c["endpoint"],
            c["clients"],
            c["p50_ms"],
            c["p95_ms"],
            c["p99_ms"],
            c["throughput_rps"],
            sum(c["errors"].values()) or "",
            (
                verdict(c["p95_ms"] <= TARGET_P95_MS)
                if c["endpoint"] in SEARCH_MODES and c["clients"] == 8
                else ""
            ),
        ]
        for c in cells
    ]
    per_user = args.items // args.users
    processes = (
        "one uvicorn process"
        if args.api_workers == 1
        else (f"{args.api_workers} uvicorn processes")
    )
    markdown = (
        f"### API under load ({args.items:,} items over {args.users} users, "
        f"{args.duration:g} s per cell, local mode, {processes}, offline embedder; "
        f"load average before the run {load_before})\n\n"
        + table(
            [
                "endpoint",
                "clients",
                "p50 (ms)",
                "p95 (ms)",
                "p99 (ms)",
                "req/s",
                "errors",
                f"search p95 <= {TARGET_P95_MS:.0f} ms at 8",
            ],
            rows,
        )
        + f"\n{per_user:,} items per user: semantic search takes the exact-scan path "
        "(<= 5,000 documents per user, `search_exact_scan_max`); semantic and hybrid include "
        "embedding the query on the API's CPU (all-MiniLM-L6-v2 in numpy). "
        f"{processes.capitalize()}; client, API, PostgreSQL share the machine.\n" + LIMITS
    )
    write_results(
        args.out,
        args.name,
        {
            "api_workers": args.api_workers,
            "load_average_before": load_before,
            "items": args.items,
            "users": args.users,
            "issue_items": 100_000,
            "duration_s_per_cell": args.duration,
            "seed_s": round(seed_s, 1),
            "target_search_p95_ms_at_8": TARGET_P95_MS,
            "meets_target": met,
            "cells": cells,
        },
        markdown,
    )


if __name__ == "__main__":
    main()
