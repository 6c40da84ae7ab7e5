"""Cold start: for each function of the topology, a fresh interpreter's time to "handler ready".

    uv run python -m benchmarks.cold_start [--runs 7]

"Ready" = the handler module imported (what Lambda's init phase does) plus the initialisation the
first call does that is not request-specific:

- api: ``runtime.handlers.api._build()`` (the FastAPI app behind Mangum, built lazily on the
  first invocation);
- thumbnail, analyze, embed, cleanup: ``runtime.handlers.wiring.pipeline()`` (settings, the
  boto3 clients, the publisher; providers are created lazily by the first item);
- migrate: the module import (its work is the migration itself).

Each run is a new ``python`` process timed from spawn to exit (interpreter start included); the
first run of each function is discarded (it may write bytecode caches), the median of the rest is
reported. ``-X importtime`` of one more run gives the top-level packages that dominate.
No database or AWS endpoint is contacted (the settings point at unreachable addresses).

Targets: api <= 0.5 s, every other function <= 1 s. Measured on this machine (not on Lambda:
there, add the runtime's own bootstrap, and Graviton cores are slower or faster than these).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchmarks._common import RESULTS, ROOT, median, table, verdict, write_results
from runtime.topology import FUNCTIONS

TARGETS_S = {"api": 0.5}
DEFAULT_TARGET_S = 1.0

READY = {
    "api": "import runtime.handlers.api as h; h._build()",
    "migrate": "import runtime.handlers.migrate",
}
PIPELINE_READY = "import {module}; from runtime.handlers.wiring import pipeline; pipeline()"


LIMITS = """
**What limits it.** Importing SQLAlchemy (ORM, SQL compiler, events: the largest self import
time above) costs about 0.6 s on its own here, more than the API's whole budget, and every
function imports it at module load (through `runtime.db`). FastAPI + pydantic add about 0.3 s
to the API, botocore and urllib3 about 0.2-0.3 s to the pipeline functions. To meet the targets:
import the ORM lazily (the API's `/version` and token checks need none of it), or use Lambda
SnapStart for Python (3.12+), which restores an initialised snapshot instead of re-importing;
provisioned concurrency hides it for the API. Measured with Python 3.11 on x86_64 sharing 2
CPUs; Lambda runs 3.12 on Graviton.
"""


def ready_code(name: str, handler: str) -> str:
    module = handler.rsplit(".", 1)[0]
    return READY.get(name, PIPELINE_READY.format(module=module))


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIONS_")}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        COLLECTIONS_DATABASE_URL="postgresql+psycopg://bench:bench@127.0.0.1:9/bench",
        COLLECTIONS_AWS_ENDPOINT_URL="http://127.0.0.1:9",
        COLLECTIONS_COGNITO_USER_POOL_ID="us-east-1_bench",
        COLLECTIONS_COGNITO_APP_CLIENT_ID="x",
        COLLECTIONS_COGNITO_JWKS_URL="http://127.0.0.1:9/jwks.json",
        POWERTOOLS_METRICS_NAMESPACE="Bench",
    )
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("VOYAGE_API_KEY", None)
    return env


def one_run(code: str, env: dict[str, str], importtime: bool = False) -> tuple[float, str]:
    flags = ["-X", "importtime"] if importtime else []
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{done.stderr[-2000:]}")
    return elapsed, done.stderr


LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def top_packages(stderr: str, count: int = 8) -> list[tuple[str, float]]:
    """Self import time (ms) summed by top-level package, largest first."""
    totals: dict[str, float] = defaultdict(float)
    for match in LINE.finditer(stderr):
        totals[match.group(4).split(".")[0]] += int(match.group(1)) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = environment()
    baseline = [one_run("pass", env)[0] for _ in range(args.runs)]
    results, rows = {}, []
    for fn in FUNCTIONS:
        code = ready_code(fn.name, fn.handler)
        one_run(code, env)  # discarded: bytecode caches
        times = [one_run(code, env)[0] for _ in range(args.runs)]
        _, trace = one_run(code, env, importtime=True)
        top = top_packages(trace)
        target = TARGETS_S.get(fn.name, DEFAULT_TARGET_S)
        met = median(times) <= target
        results[fn.name] = {
            "ready_code": code,
            "median_s": round(median(times), 3),
            "all_s": [round(t, 3) for t in times],
            "target_s": target,
            "meets_target": met,
            "memory_mb": fn.memory_mb,
            "top_packages_self_ms": [(name, round(ms, 1)) for name, ms in top],
        }
        rows.append(
            [
                fn.name,
                f"{median(times):.2f}",
                f"{min(times):.2f}-{max(times):.2f}",
                f"<= {target:g}",
                verdict(met),
                ", ".join(f"{name} {ms:.0f}" for name, ms in top[:5]),
            ]
        )
    markdown = (
        f"### Cold start (fresh interpreter to handler ready, median of {args.runs})\n\n"
        + table(
            [
                "function",
                "median (s)",
                "range (s)",
                "target (s)",
                "result",
                "dominant packages (self import ms)",
            ],
            rows,
        )
        + f"\nAn empty interpreter (`python -c pass`) takes {median(baseline):.3f} s here; it is "
        "included above. Measured on this machine, not on Lambda.\n" + LIMITS
    )
    write_results(
        args.out,
        "cold_start",
        {
            "runs": args.runs,
            "python_empty_s": round(median(baseline), 3),
            "functions": results,
            "meets_targets": all(r["meets_target"] for r in results.values()),
        },
        markdown,
    )


if __name__ == "__main__":
    main()
