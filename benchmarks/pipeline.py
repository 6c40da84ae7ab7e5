"""The pipeline end to end: upload-to-ready latency and items per minute, in local mode with
offline providers, over the 96 screenshots.

    uv run python -m benchmarks.pipeline [--screenshots DIR] [--limit 0] [--single 3]

Starts `collections dev` (default 2 pipeline workers) in a scratch folder on free ports, signs a
user in on the emulator's Cognito pool, and uploads through the HTTP API exactly as
`collections upload` does (``POST /items`` then the presigned POST to the S3 emulator), so each
item runs thumbnail -> analyze (RapidOCR + heuristics) -> embed (all-MiniLM-L6-v2).

- idle: ``--single`` screenshots uploaded one at a time, each waited for (no queue);
- batch: all the others uploaded at once (4 upload threads, as the CLI), the queue drained by
  the workers: latency includes the time spent queued, items/min is the sustained rate.

Latency is the server's ``ready_at - created_at`` of each item (``created_at`` is set by
``POST /items``, so the S3 upload is included). No target in the issue: measured for the record
and for the cost estimate (benchmarks.cost).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks._common import DATASETS, RESULTS, median, percentile, table, write_results
from benchmarks._dev import start_dev

PASSWORD = "Bench-passw0rd-123"


def upload(client: httpx.Client, path: Path) -> str:
    created = client.post(
        "/items",
        json={"file_name": path.name, "content_type": "image/jpeg", "size": path.stat().st_size},
    )
    created.raise_for_status()
    body = created.json()
    form = body["upload"]
    with path.open("rb") as data:
        sent = httpx.post(
            form["url"],
            data=form["fields"],
            files={"file": (path.name, data, form["content_type"])},
            timeout=120,
        )
    sent.raise_for_status()
    return body["item"]["id"]


def wait_all(client: httpx.Client, ids: set[str], timeout_s: float) -> dict[str, dict]:
    """Poll the item list until every id is ready or failed; returns their summaries."""
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(ids) and time.monotonic() < deadline:
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = client.get("/items", params=params).json()
            for item in page["items"]:
                if item["id"] in ids and item["status"] in ("ready", "failed"):
                    done[item["id"]] = item
            cursor = page.get("next_cursor")
            if not cursor:
                break
        time.sleep(0.5)
    return done


def latency_s(item: dict) -> float:
    created = datetime.fromisoformat(item["created_at"])
    ready = datetime.fromisoformat(item["ready_at"] or item["updated_at"])
    return (ready - created).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--screenshots", type=Path, default=DATASETS / "screenshots")
    parser.add_argument("--limit", type=int, default=0, help="only the first N screenshots")
    parser.add_argument("--single", type=int, default=3, help="uploaded one at a time first")
    parser.add_argument("--workers", type=int, default=2, help="`collections dev --workers`")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    files = sorted(args.screenshots.glob("*.jpg")) if args.screenshots.is_dir() else []
    if not files:
        print(f"pipeline benchmark skipped: no screenshots at {args.screenshots} (--screenshots)")
        return
    if args.limit:
        files = files[: args.limit]
    single, batch = files[: args.single], files[args.single :]
    with tempfile.TemporaryDirectory(prefix="pipeline-") as scratch:
        product = start_dev(Path(scratch), workers=args.workers)
        try:
            _, token = product.user("pipeline@collections.local", PASSWORD)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=product.api_url, headers=headers, timeout=60) as client:
                idle = []
                for path in single:
                    item_id = upload(client, path)
                    idle.extend(wait_all(client, {item_id}, args.timeout).values())
                started = time.monotonic()
                with ThreadPoolExecutor(4) as pool:
                    ids = set(pool.map(lambda p: upload(client, p), batch))
                uploaded_s = time.monotonic() - started
                finished = wait_all(client, ids, args.timeout)
        finally:
            product.stop()
    items = list(finished.values())
    ready = [i for i in items if i["status"] == "ready"]
    failed = [i for i in items if i["status"] == "failed"]
    lat = [latency_s(i) for i in ready]
    idle_lat = [latency_s(i) for i in idle if i["status"] == "ready"]
    first = min(datetime.fromisoformat(i["created_at"]) for i in items)
    last = max(datetime.fromisoformat(i["ready_at"] or i["updated_at"]) for i in items)
    span = (last - first).total_seconds()
    per_minute = len(ready) / span * 60 if span else float("nan")
    rows = [
        [
            f"idle (one at a time, {len(idle)})",
            f"{median(idle_lat):.1f}",
            f"{percentile(idle_lat, 95):.1f}",
            "-",
            "",
        ],
        [
            f"batch of {len(batch)} at once",
            f"{median(lat):.1f}",
            f"{percentile(lat, 95):.1f}",
            f"{per_minute:.0f}",
            f"{len(failed)} failed, {len(ids) - len(items)} unfinished",
        ],
    ]
    markdown = (
        f"### Pipeline (upload to ready, local mode, offline providers, {args.workers} workers)\n\n"
        + table(["run", "p50 (s)", "p95 (s)", "items/min", "notes"], rows)
        + f"\nUploads of the batch took {uploaded_s:.1f} s. Thumbnail, OCR-based analysis and "
        "embedding all run on this machine's CPUs (on AWS each stage is its own Lambda and "
        "the analysis is a Claude call).\n"
    )
    write_results(
        args.out,
        "pipeline",
        {
            "images": len(files),
            "workers": args.workers,
            "idle_latency_s": {
                "p50": median(idle_lat),
                "p95": percentile(idle_lat, 95),
                "all": idle_lat,
            },
            "batch": {
                "items": len(batch),
                "ready": len(ready),
                "failed": len(failed),
                "unfinished": len(ids) - len(items),
                "upload_s": round(uploaded_s, 1),
                "latency_s": {
                    "p50": median(lat),
                    "p95": percentile(lat, 95),
                    "max": max(lat, default=float("nan")),
                },
                "items_per_minute": round(per_minute, 1),
                "span_s": round(span, 1),
            },
        },
        markdown,
    )


if __name__ == "__main__":
    main()
