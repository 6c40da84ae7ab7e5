"""runtime.local.sandbox: local mode holds each invocation to its function's memory and timeout,
the way Lambda does, and a runaway invocation hurts nothing but itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.local.sandbox import ADDRESS_SPACE_HEADROOM_MB, Sandbox
from runtime.topology import Function, Http, function
from tests.corpus import write_hostile_corpus


def target(name: str, *, memory_mb: int = 256, timeout_s: int = 30) -> Function:
    return Function(
        name=name,
        handler=f"tests.sandbox_targets.{name}",
        trigger=Http(),
        memory_mb=memory_mb,
        timeout_s=timeout_s,
    )


@pytest.fixture
def sandboxes() -> Iterator[list[Sandbox]]:
    opened: list[Sandbox] = []
    yield opened
    for sandbox in opened:
        sandbox.close()


def open_sandbox(sandboxes: list[Sandbox], fn: Function) -> Sandbox:
    sandbox = Sandbox(fn)
    sandboxes.append(sandbox)
    return sandbox


def test_an_invocation_runs_warm_and_reports_its_peak_memory(sandboxes: list[Sandbox]) -> None:
    sandbox = open_sandbox(sandboxes, target("echo"))
    first = sandbox.invoke({"n": 1})
    pid = sandbox.pid
    second = sandbox.invoke({"n": 2})
    assert first.ok and second.ok
    assert second.result == {"echo": {"n": 2}, "memory_limit_in_mb": 256}
    assert sandbox.pid == pid  # reused, like a warm container
    assert 5 < second.peak_mb < 256
    assert second.report()["max_memory_used_mb"] == round(second.peak_mb, 1)


def test_a_creeping_invocation_is_killed_at_its_memory_size(sandboxes: list[Sandbox]) -> None:
    sandbox = open_sandbox(sandboxes, target("creep", memory_mb=200))
    killed = sandbox.invoke({"steps": 10_000})
    assert killed.error_type == "Runtime.OutOfMemory"
    assert "exceeds the function's 200 MB" in killed.error_message
    assert killed.peak_mb > 200
    # the next invocation gets a fresh sandbox and works
    assert sandbox.invoke({"steps": 2}).result == {"kept": 2}


def test_one_huge_allocation_fails_at_once_on_the_address_space_backstop(
    sandboxes: list[Sandbox],
) -> None:
    sandbox = open_sandbox(sandboxes, target("grab", memory_mb=256))
    gigabytes = (256 + ADDRESS_SPACE_HEADROOM_MB) // 1024 + 2
    failed = sandbox.invoke({"gigabytes": gigabytes})
    assert failed.error_type == "Runtime.OutOfMemory"
    assert failed.peak_mb < 256
    assert open_sandbox(sandboxes, target("echo")).invoke({}).ok


def test_an_invocation_past_its_timeout_is_killed(sandboxes: list[Sandbox]) -> None:
    sandbox = open_sandbox(sandboxes, target("hang", timeout_s=2))
    beats: list[int] = []
    timed_out = sandbox.invoke({}, heartbeat=lambda: beats.append(1), heartbeat_every_s=0.5)
    assert timed_out.error_type == "Sandbox.Timedout"
    assert 2 <= timed_out.duration_s < 5
    assert len(beats) >= 2  # the caller kept its event invisible while the attempt ran


def test_a_crash_is_an_invocation_error_not_a_worker_crash(sandboxes: list[Sandbox]) -> None:
    sandbox = open_sandbox(sandboxes, target("die"))
    crashed = sandbox.invoke({})
    assert crashed.error_type == "Runtime.ExitError"
    assert "exit status -9" in crashed.error_message


def test_the_hostile_corpus_stays_within_the_functions_memory(
    sandboxes: list[Sandbox], tmp_path: Path
) -> None:
    """Every hostile file through the image work and the offline analyzer, each in a sandbox of
    its function's memory size: the expected outcome, and a peak below the limit."""
    thumbnail = replace(function("thumbnail"), handler="tests.sandbox_targets.thumbnail_file")
    analyze = replace(function("analyze"), handler="tests.sandbox_targets.analyze_file")
    images, analyzer = open_sandbox(sandboxes, thumbnail), open_sandbox(sandboxes, analyze)
    peaks = {"thumbnail": 0.0, "analyze": 0.0}
    for path, want in write_hostile_corpus(tmp_path / "corpus").items():
        derivative = tmp_path / f"{path.name}.analysis.jpg"
        made = images.invoke({"path": str(path), "derivative": str(derivative)})
        assert made.ok, (path.name, made.error_type, made.error_message)
        peaks["thumbnail"] = max(peaks["thumbnail"], made.peak_mb)
        assert made.result["status"] == want.status, (path.name, made.result)
        if want.status == "failed":
            assert made.result["reason"] == want.reason, (path.name, made.result)
            continue
        assert made.result["warnings"] == list(want.warnings), path.name
        if want.size:
            assert tuple(made.result["size"]) == want.size, path.name
        read = analyzer.invoke({"path": str(derivative)})
        assert read.ok, (path.name, read.error_type, read.error_message)
        peaks["analyze"] = max(peaks["analyze"], read.peak_mb)
    assert peaks["thumbnail"] < thumbnail.memory_mb, peaks
    assert peaks["analyze"] < analyze.memory_mb, peaks


def test_the_strip_that_once_took_21_gb_is_analyzed_within_the_memory_size(
    sandboxes: list[Sandbox], tmp_path: Path
) -> None:
    """A 1568x1 derivative (what a 20000x1 PNG used to become) through the OCR, capped."""
    from PIL import Image

    strip = tmp_path / "strip.jpg"
    Image.new("RGB", (1568, 1), (20, 20, 20)).save(strip, "JPEG")
    analyze = replace(function("analyze"), handler="tests.sandbox_targets.analyze_file")
    read = open_sandbox(sandboxes, analyze).invoke({"path": str(strip)})
    assert read.ok, (read.error_type, read.error_message)
    assert read.peak_mb < analyze.memory_mb
