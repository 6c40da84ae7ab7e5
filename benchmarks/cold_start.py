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
reported, as wall time and as the child's CPU time (user + system): on a shared machine the wall
time includes waiting for a core, which a Lambda init phase does not. The verdict uses the CPU
time. ``-X importtime`` of one more run gives the top-level packages that dominate.

Next to "ready", the same run times "ready + first use": ready plus the imports the first event
or request makes (the stage module and the ORM for a pipeline function; the ORM, the search
domain and the routes' queries for the API), i.e. what a cold start cost when everything was
imported at module load. For the API it also times the framework floor: FastAPI, pydantic,
Mangum, PyJWT and the settings, imported with an app of no routes (what no lazy import can save).
No database or AWS endpoint is contacted (the settings point at unreachable addresses).

``--baseline DIR`` times the same "ready" code in another source tree of the project (e.g. the
commit before a change, ``git archive <commit> | tar -x -C DIR``), run by run interleaved with
this tree's, so a before/after comparison shares the machine's load.

``--python`` measures with another interpreter that has the runtime dependencies installed, e.g.
CPython 3.12 (the Lambda runtime's). Targets: api <= 0.5 s, every other function <= 1 s.
Measured on this machine, not on Lambda (there, add the runtime's own bootstrap; Graviton cores
are slower or faster than these).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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
# What the first event or request imports on top of "ready" (what used to be imported eagerly).
FIRST_USE = {
    "api": "import runtime.db.session, runtime.domain.search, runtime.domain.items",
    "thumbnail": "import runtime.domain.thumbnail_stage, runtime.db.session",
    "analyze": "import runtime.domain.analyze_stage, runtime.db.session, anthropic",
    "embed": "import runtime.domain.embed_stage, runtime.db.session",
    "assistant": "import runtime.domain.assistant, runtime.db.session, anthropic",
    "cleanup": "import runtime.domain.cleanup_stage, runtime.db.session",
    "deadletter": "import runtime.domain.deadletter_stage, runtime.db.session",
}
API_FLOOR = (
    "import fastapi, mangum, jwt, jwt.algorithms, runtime.config; "
    "mangum.Mangum(fastapi.FastAPI(), lifespan='off'); runtime.config.get_settings()"
)


LIMITS = """
**What limits it.** What every function loads at "ready" is the interpreter, pydantic and
pydantic-settings (the settings), Powertools (logger, metrics; for the event handlers also the
parser's EventBridge models, which load every event source's model) and, for the pipeline
functions, botocore and the clients they use on every event (created at init so that
connections are reused). The API loads FastAPI (its OpenAPI models alone are a large part),
pydantic, PyJWT with `cryptography`, the settings and its own routes and schemas: its framework
floor (no routes) is measured in the same run. What a request or event may not need is
imported on first use: the ORM and the queries (the API's routes import them per request; the
error handlers that need SQLAlchemy's and botocore's classes are registered by the first
request), the model SDKs, the image libraries and Alembic: "ready + first use" shows that cost
in the same run. Lambda SnapStart does not apply to container images. Measured on a 2-CPU
machine shared with other work while it ran, so the absolute figures are inflated (see the
empty interpreter's time): compare the columns of one run, not runs.

**What was tried, with its figure** (the baseline column, when present, is the tree before the
API and handler changes, interleaved run by run with this one). (1) The API's routes import
the ORM and their queries per request; the enums the routes declare live in
`runtime.domain.vocabulary`; the database and AWS SDK error handlers are registered by the
first request: SQLAlchemy was about 0.6 s of the API's 1.65 s import (`-X importtime`, wall
time, load average about 2). (2) The event contracts no longer import Powertools' parser
models (the API loaded them to publish events), and each event handler declares only the
envelope it parses.
(3) Measured and not done: Powertools' parser models cost about 0.2 s CPU over pydantic alone
(0.38-0.42 s against 0.19-0.24 s, load average about 2); replacing them by hand-written
envelopes would go against using Powertools' event models. botocore's import is 0.22-0.32 s and
the first client (S3) 0.12 s, the others 0.01-0.04 s: thumbnail and analyze use them on every
event, so creating them later would only move the cost into the first event. Creating clients
from a botocore session instead of boto3 saves 0.03 s (boto3 on top of botocore): not done.
"""


def ready_code(name: str, handler: str) -> str:
    module = handler.rsplit(".", 1)[0]
    return READY.get(name, PIPELINE_READY.format(module=module))


def environment(function: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIONS_")}
    # The image ships compiled bytecode; here the warm-up run writes it (a machine that sets
    # PYTHONDONTWRITEBYTECODE would otherwise compile every module on every run).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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
    if function == "analyze":  # as deployed: the model calls are guarded by the idempotency table
        env["COLLECTIONS_IDEMPOTENCY_TABLE"] = "bench-idempotency"
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("VOYAGE_API_KEY", None)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(
    code: str,
    env: dict[str, str],
    importtime: bool = False,
    python: str = sys.executable,
    cwd: Path = ROOT,
) -> tuple[float, str, float]:
    """(wall seconds, stderr, CPU seconds) of one fresh interpreter running ``code`` in the
    source tree ``cwd``."""
    flags = ["-X", "importtime"] if importtime else []
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [python, *flags, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{done.stderr[-2000:]}")
    return elapsed, done.stderr, _children_cpu() - cpu_before


def timed(
    code: str, env: dict[str, str], runs: int, python: str, baseline: Path | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Wall and CPU seconds of ``runs`` fresh interpreters (after one discarded warm-up), and
    the CPU seconds of the same code in the ``baseline`` source tree, run by run interleaved."""
    one_run(code, env, python=python)
    if baseline:
        one_run(code, env, python=python, cwd=baseline)
    walls, cpus, before = [], [], []
    for _ in range(runs):
        wall, _, cpu = one_run(code, env, python=python)
        walls.append(wall)
        cpus.append(cpu)
        if baseline:
            before.append(one_run(code, env, python=python, cwd=baseline)[2])
    return walls, cpus, before


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
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree of this project (e.g. `git archive <commit> | tar -x -C DIR`) "
        "whose 'ready' is timed in the same run, interleaved",
    )
    parser.add_argument("--baseline-label", default="", help="what the baseline is (a commit)")
    args = parser.parse_args()
    python = args.python
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    load_before = os.getloadavg()
    empty, _, _ = timed("pass", environment(), args.runs, python)
    floor_wall, floor_cpu, _ = timed(API_FLOOR, environment("api"), args.runs, python)
    results, rows = {}, []
    for fn in FUNCTIONS:
        env = environment(fn.name)
        code = ready_code(fn.name, fn.handler)
        walls, cpus, before = timed(code, env, args.runs, python, args.baseline)
        first_use = FIRST_USE.get(fn.name)
        eager_walls, eager_cpus = (
            timed(f"{code}; {first_use}", env, args.runs, python)[:2] if first_use else ([], [])
        )
        _, trace, _ = one_run(code, env, importtime=True, python=python)
        top = top_packages(trace)
        target = TARGETS_S.get(fn.name, DEFAULT_TARGET_S)
        met = median(cpus) <= target
        results[fn.name] = {
            "ready_code": code,
            "median_s": round(median(cpus), 3),
            "median_cpu_s": round(median(cpus), 3),
            "median_wall_s": round(median(walls), 3),
            "all_wall_s": [round(t, 3) for t in walls],
            "all_cpu_s": [round(t, 3) for t in cpus],
            "first_use_code": first_use,
            "ready_plus_first_use_cpu_s": round(median(eager_cpus), 3) if eager_cpus else None,
            "ready_plus_first_use_wall_s": round(median(eager_walls), 3) if eager_walls else None,
            "target_s": target,
            "meets_target": met,
            "memory_mb": fn.memory_mb,
            "top_packages_self_ms": [(name, round(ms, 1)) for name, ms in top],
            "baseline_cpu_s": round(median(before), 3) if before else None,
            "baseline_all_cpu_s": [round(t, 3) for t in before],
        }
        rows.append(
            [
                fn.name,
                f"{median(cpus):.2f}",
                f"{median(walls):.2f}",
                f"{median(eager_cpus):.2f}" if eager_cpus else "-",
                *([f"{median(before):.2f}"] if args.baseline else []),
                f"<= {target:g}",
                verdict(met),
                ", ".join(f"{name} {ms:.0f}" for name, ms in top[:5]),
            ]
        )
    floor = median(floor_cpu)
    load_after = os.getloadavg()
    load = (
        f"Load average (1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load_before)} at the start, "
        f"{', '.join(f'{x:.1f}' for x in load_after)} at the end, on {os.cpu_count()} CPUs."
    )
    markdown = (
        f"### Cold start (fresh interpreter to handler ready, median of {args.runs}, "
        f"Python {version})\n\n"
        + table(
            [
                "function",
                "ready, CPU (s)",
                "ready, wall (s)",
                "ready + first use, CPU (s)",
                *([f"baseline {args.baseline_label}: ready, CPU (s)"] if args.baseline else []),
                "target (s)",
                "result",
                "dominant packages at ready (self import ms)",
            ],
            rows,
        )
        + f"\nAn empty interpreter (`python -c pass`) takes {median(empty):.3f} s wall here; "
        "it is included above. The API's framework floor (FastAPI + pydantic + Mangum + PyJWT + "
        f"settings, an app with no routes) takes {floor:.2f} s CPU "
        f"({median(floor_wall):.2f} s wall) in the same run. Measured on this machine (shared by "
        "other work while it ran: compare the columns of one run, not runs), not on Lambda. "
        + load
        + "\n"
        + LIMITS
    )
    write_results(
        args.out,
        "cold_start",
        {
            "runs": args.runs,
            "python": version,
            "python_empty_s": round(median(empty), 3),
            "load_average_start": [round(x, 2) for x in load_before],
            "load_average_end": [round(x, 2) for x in load_after],
            "baseline": args.baseline_label or (str(args.baseline) if args.baseline else None),
            "api_framework_floor_cpu_s": round(floor, 3),
            "api_framework_floor_wall_s": round(median(floor_wall), 3),
            "functions": results,
            "meets_targets": all(r["meets_target"] for r in results.values()),
        },
        markdown,
    )


if __name__ == "__main__":
    main()
