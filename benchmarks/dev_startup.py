"""How long `collections dev` takes to start (to the banner, API answering), first and later
starts, run inside a network namespace that has only loopback - so it also shows that local
mode needs no network beyond 127.0.0.1 when no API key is set.

    uv run python -m benchmarks.dev_startup [--runs 3] [--out benchmarks/results]

Target (issue: local mode): a start, when already installed, in under 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 15.0
BANNER = "Collections is running locally"


def loopback_only_prefix() -> list[str]:
    """Run the child in a new network namespace with only `lo` up, when this machine allows."""
    if shutil.which("unshare") and shutil.which("ip") and os.geteuid() == 0:
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    return []


def one_start(data_dir: Path, prefix: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIONS_")}
    for key in ("ANTHROPIC_API_KEY", "VOYAGE_API_KEY"):
        env.pop(key, None)
    log = data_dir.parent / "dev.log"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "runtime.cli.main", "dev", "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while BANNER not in log.read_text():
            if process.poll() is not None:
                raise RuntimeError(f"collections dev exited:\n{log.read_text()[-2000:]}")
            if time.monotonic() - started > 120:
                raise RuntimeError("collections dev did not start within 120 s")
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    prefix = loopback_only_prefix()
    first, later = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as scratch:
            data_dir = Path(scratch) / "data"
            first.append(one_start(data_dir, prefix))
            later.append(one_start(data_dir, prefix))
    result = {
        "benchmark": "dev_startup",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "loopback_only_namespace": bool(prefix),
        "runs": args.runs,
        "first_start_s": {"median": statistics.median(first), "all": first},
        "later_start_s": {"median": statistics.median(later), "all": later},
        "target_s": TARGET_S,
        "meets_target": statistics.median(later) < TARGET_S,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dev_startup.json").write_text(json.dumps(result, indent=2))
    table = (
        "| start | median (s) | runs (s) | target |\n|---|---|---|---|\n"
        f"| first (empty data folder) | {statistics.median(first):.1f} | "
        f"{', '.join(f'{t:.1f}' for t in first)} | - |\n"
        f"| later (data kept) | {statistics.median(later):.1f} | "
        f"{', '.join(f'{t:.1f}' for t in later)} | < {TARGET_S:.0f} |\n"
    )
    network = (
        "in a network namespace with only loopback"
        if prefix
        else "on the host network (no namespace available)"
    )
    (args.out / "dev_startup.md").write_text(f"`collections dev` start-up, {network}:\n\n{table}")
    print(table)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
