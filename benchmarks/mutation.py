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
from concurrent.futures import ThreadPoolExecutor
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


def test_files(root: Path) -> list[str]:
    every = sorted(str(p.relative_to(root)) for p in (root / "tests/infra").glob("test_*.py"))
    rest = [f for f in every if f not in TEST_ORDER + LAST]
    return [f for f in TEST_ORDER if f in every] + rest + [f for f in LAST if f in every]


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


def run_one(mutant: Mutant, base: Path, files: list[str], timeout: int) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        tree = Path(tmp)
        scratch_copy(base, tree, files)
        apply(mutant, tree)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(tree)  # ahead of the editable install of the real tree
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        command += test_files(tree)
        try:
            proc = subprocess.run(
                command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return Outcome(mutant, "timeout", time.monotonic() - started, "timed out")
    status = "survived" if proc.returncode == 0 else "killed"
    failed = first_failure(proc.stdout + proc.stderr) if status == "killed" else ""
    return Outcome(mutant, status, time.monotonic() - started, failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if args.only is None or m.id in args.only]
    files = tracked_files(ROOT)
    # One snapshot of the working tree at the start: edits made while the run goes on (a
    # rebase, say) do not leak into some mutants and not others.
    snapshot = tempfile.TemporaryDirectory(prefix="mutation-base-")
    base = Path(snapshot.name)
    scratch_copy(ROOT, base, files)
    jobs = max(1, min(args.jobs, 2))  # two cores, shared: never more than two test runs
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        # The unmutated tree must pass, or every "kill" below means nothing.
        for outcome in pool.map(
            lambda m: run_one(m, base, files, args.timeout), [BASELINE, *mutants]
        ):
            print(f"{outcome.status:8} {outcome.seconds:6.0f}s {outcome.mutant.id}", flush=True)
            if outcome.mutant is BASELINE:
                if outcome.status != "survived":
                    raise SystemExit(f"the unmutated tree fails tests/infra: {outcome.failed}")
                continue
            outcomes.append(outcome)
    snapshot.cleanup()
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
        f"**{rate:.1%}** (wall time {time.monotonic() - started:.0f} s, {jobs} at a time).\n\n"
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
