"""Mutation testing of the infrastructure tests: how many realistic mistakes do they catch?

    python -m benchmarks.mutation [--jobs 2] [--only ID ...] [--timeout 900]

Each mutant of ``benchmarks/mutants.py`` is applied to its own scratch copy of the repository
(the files git tracks or would track, as they are in the working tree), and ``tests/infra`` runs
there (``-x``: the first failure kills the mutant; the most specific test files first, the
slow end-to-end handler check last). At most ``--jobs`` copies run at once. Prints the kill rate
and the survivors, and writes ``benchmarks/results/mutation.json`` and ``.md``. Not part of CI
(it takes tens of minutes); ``tests/infra/test_mutants.py`` checks that the mutants apply.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import RESULTS, ROOT, table, write_results
from benchmarks.mutants import ACCEPTED_SURVIVORS, MUTANTS, Mutant

# Most specific and fastest first; the end-to-end handler check (PostgreSQL, emulator) last.
TEST_ORDER = (
    "tests/infra/test_runtime_contract.py",
    "tests/infra/test_deployment_safety.py",
    "tests/infra/test_infra_program.py",
    "tests/infra/test_infra_units.py",
    "tests/infra/test_policy_pack.py",
    "tests/infra/test_infra_config.py",
    "tests/infra/test_infra_release.py",
)
LAST = ("tests/infra/test_handler_access.py",)


# Checks the mutants apply to the unmutated tree: a mutated tree fails it by construction.
NOT_RUN = ("tests/infra/test_mutants.py",)


def test_files(root: Path) -> list[str]:
    every = sorted(str(p.relative_to(root)) for p in (root / "tests/infra").glob("test_*.py"))
    every = [f for f in every if f not in NOT_RUN]
    rest = [f for f in every if f not in TEST_ORDER + LAST]
    ordered = [f for f in TEST_ORDER if f in every] + rest + [f for f in LAST if f in every]
    # Re-running mutants that passed the files before START_AT in an earlier run.
    start = os.environ.get("COLLECTIONS_MUTATION_START_AT")
    return ordered[ordered.index(start) :] if start else ordered


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def scratch_copy(root: Path, dest: Path, files: list[str]) -> None:
    for f in files:
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, target)


BASELINE = Mutant("baseline (no mutation)", "README.md", "", "", "the unmutated tree")


def apply(mutant: Mutant, tree: Path) -> None:
    if mutant is BASELINE:
        return
    path = tree / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise ValueError(f"{mutant.id}: the text to replace occurs {text.count(mutant.old)} times")
    path.write_text(text.replace(mutant.old, mutant.new))


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | timeout
    seconds: float
    failed: str  # the first failing test (or error), for killed mutants


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    return output.strip().splitlines()[-1] if output.strip() else ""


def purge_modules(tree: Path) -> None:
    """Forget every module loaded from the scratch tree (program, runtime, tests), so the next
    run imports the mutated files; the heavy libraries (pulumi_aws, pydantic…) stay loaded."""
    prefix = str(tree)
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(prefix):
            del sys.modules[name]


def worker(base: Path, ids: list[str], out: Path) -> None:
    """Run the mutants ``ids`` one after the other in this process, on one scratch copy."""
    import contextlib
    import io
    import json

    import pytest

    by_id = {m.id: m for m in [*MUTANTS, BASELINE]}
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        tree = Path(tmp)
        shutil.copytree(base, tree, dirs_exist_ok=True)
        os.chdir(tree)
        sys.path.insert(0, str(tree))
        for mutant_id in ids:
            mutant = by_id[mutant_id]
            path = tree / mutant.path
            original = path.read_text()
            apply(mutant, tree)
            purge_modules(tree)
            started = time.monotonic()
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *test_files(tree)])
            path.write_text(original)
            status = "survived" if code == 0 else "killed"
            record = {
                "id": mutant_id,
                "status": status,
                "seconds": time.monotonic() - started,
                "failed": first_failure(buffer.getvalue()) if status == "killed" else "",
            }
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")


def run_workers(
    base: Path, mutants: list[Mutant], jobs: int, timeout: int, log: Path, *, baseline: bool
) -> list[Outcome]:
    """``jobs`` worker processes share the mutants round-robin; each writes a line per mutant."""
    import json

    chunks = [[m.id for m in mutants[i::jobs]] for i in range(jobs)]
    if baseline:
        chunks[0].insert(0, BASELINE.id)
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}"  # the runner's own modules; each worker puts its tree first
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.mutation", "--worker", str(base), str(log),
             *chunk],
            cwd=ROOT,
            env=env,
        )
        for chunk in chunks
        if chunk
    ]  # fmt: skip
    deadline = time.monotonic() + timeout * len(mutants)
    for proc in procs:
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    by_id = {m.id: m for m in [*mutants, BASELINE]}
    outcomes = []
    for line in log.read_text().splitlines():
        r = json.loads(line)
        outcomes.append(Outcome(by_id[r["id"]], r["status"], r["seconds"], r["failed"]))
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip checking that the unmutated tree passes"
    )
    parser.add_argument(
        "--start-at",
        default=None,
        help="test file to start at (for mutants that passed the earlier files in a run)",
    )
    parser.add_argument(
        "--report-from",
        nargs="+",
        default=None,
        help="write results from progress files (a later file's line for a mutant replaces an "
        "earlier one: a re-run with --start-at)",
    )
    parser.add_argument("--worker", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        base, out, *ids = args.worker
        worker(Path(base), ids, Path(out))
        return
    if args.report_from:
        # The lines a run (possibly stopped early) wrote: report what was measured.
        latest: dict[str, Outcome] = {}
        for path in args.report_from:
            latest |= {o.mutant.id: o for o in load_progress(Path(path))}
        done = list(latest.values())
        baseline_ok = [o.status for o in done if o.mutant is BASELINE]
        order = [m.id for m in MUTANTS]
        outcomes = sorted(
            (o for o in done if o.mutant is not BASELINE), key=lambda o: order.index(o.mutant.id)
        )
        note = (
            f" Measured {len(outcomes)} of {len(MUTANTS)} mutants"
            + (" (run stopped early)." if len(outcomes) < len(MUTANTS) else ".")
            + " Unmutated tree: "
            + {("survived",): "passes.", ("killed",): "FAILS."}.get(tuple(baseline_ok), "not run.")
        )
        report(outcomes, jobs=2, wall=sum(o.seconds for o in done) / 2, note=note)
        return
    mutants = [m for m in MUTANTS if args.only is None or m.id in args.only]
    if args.start_at:
        os.environ["COLLECTIONS_MUTATION_START_AT"] = args.start_at
    files = tracked_files(ROOT)
    # One snapshot of the working tree at the start: edits made while the run goes on (a
    # rebase, say) do not leak into some mutants and not others.
    snapshot = tempfile.TemporaryDirectory(prefix="mutation-base-")
    base = Path(snapshot.name)
    scratch_copy(ROOT, base, files)
    jobs = max(1, min(args.jobs, 2))  # two cores, shared: never more than two test runs
    started = time.monotonic()
    log = Path(tempfile.gettempdir()) / f"collections-mutation-progress-{os.getpid()}.jsonl"
    log.unlink(missing_ok=True)
    print(f"progress: {log} (one line per mutant)", flush=True)
    all_outcomes = run_workers(
        base, mutants, jobs, args.timeout, log, baseline=not args.no_baseline
    )
    snapshot.cleanup()
    baseline = [o for o in all_outcomes if o.mutant is BASELINE]
    if not args.no_baseline and (not baseline or baseline[0].status != "survived"):
        raise SystemExit(f"the unmutated tree fails tests/infra: {baseline}")
    order = [m.id for m in mutants]
    outcomes = sorted(
        (o for o in all_outcomes if o.mutant is not BASELINE),
        key=lambda o: order.index(o.mutant.id),
    )
    log.unlink(missing_ok=True)
    report(outcomes, jobs=jobs, wall=time.monotonic() - started, note="")


def load_progress(path: Path) -> list[Outcome]:
    import json

    by_id = {m.id: m for m in [*MUTANTS, BASELINE]}
    outcomes = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        outcomes.append(Outcome(by_id[r["id"]], r["status"], r["seconds"], r["failed"]))
    return outcomes


def report(outcomes: list[Outcome], *, jobs: int, wall: float, note: str) -> None:
    killed = [o for o in outcomes if o.status != "survived"]
    survivors = [o for o in outcomes if o.status == "survived"]
    rate = len(killed) / len(outcomes) if outcomes else float("nan")
    rows = [
        [o.mutant.id, o.mutant.path, o.status, f"{o.seconds:.0f}", o.failed or o.mutant.what]
        for o in outcomes
    ]
    survivor_rows = [
        [o.mutant.id, o.mutant.what, ACCEPTED_SURVIVORS.get(o.mutant.id, "NOT ACCEPTED")]
        for o in survivors
    ]
    markdown = (
        f"## Mutation testing of tests/infra\n\n{len(killed)} of {len(outcomes)} mutants killed: "
        f"**{rate:.1%}** (wall time {wall:.0f} s, {jobs} at a time).{note}\n\n"
        + (
            "Survivors:\n\n" + table(["mutant", "mistake", "why acceptable"], survivor_rows)
            if survivors
            else "No survivors.\n"
        )
        + "\n"
        + table(["mutant", "file", "result", "s", "killed by / mistake"], rows)
    )
    write_results(
        RESULTS,
        "mutation",
        {
            "mutants": len(outcomes),
            "killed": len(killed),
            "kill_rate": rate,
            "survivors": [
                {
                    "id": o.mutant.id,
                    "what": o.mutant.what,
                    "accepted_because": ACCEPTED_SURVIVORS.get(o.mutant.id),
                }
                for o in survivors
            ],
            "outcomes": [
                {"id": o.mutant.id, "status": o.status, "seconds": round(o.seconds), "by": o.failed}
                for o in outcomes
            ],
        },
        markdown,
    )


if __name__ == "__main__":
    main()
