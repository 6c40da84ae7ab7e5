"""The mutation-testing mutants (benchmarks/mutants.py) still apply to the current tree: each
replaces text that occurs exactly once, changes it, and has a unique id. The run itself
(``python -m benchmarks.mutation``) is too slow for CI."""

from __future__ import annotations

from infra_harness import REPO_ROOT

from benchmarks.mutants import ACCEPTED_SURVIVORS, MUTANTS


def test_there_are_enough_mutants_with_unique_ids() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)
    assert set(ACCEPTED_SURVIVORS) <= set(ids)


def test_every_mutant_applies_cleanly() -> None:
    problems = []
    for m in MUTANTS:
        text = (REPO_ROOT / m.path).read_text()
        count = text.count(m.old)
        if count != 1 or m.old == m.new:
            problems.append(f"{m.id}: {m.path} contains the text {count} times")
    assert not problems, "\n".join(problems)
