"""A function's execution environment in local mode, kept to the function's memory like Lambda's.

Lambda runs each function in a sandbox of ``memory_mb``; an invocation that needs more is killed
(``Runtime.OutOfMemory``) and, for an asynchronous invocation, retried and then dead-lettered,
without touching anything else. Locally a :class:`Sandbox` is a child process
(``python -m runtime.local.sandbox NAME HANDLER MEMORY_MB``) that imports the handler once
(Lambda's init) and then runs invocations one at a time, reused between them like a warm Lambda
container. The parent (a pipeline worker) enforces:

- memory: the child's resident set (VmRSS, what Lambda's "Max Memory Used" reports) is sampled
  every ``SAMPLE_SECONDS``; above ``memory_mb`` the child is killed and the invocation fails with
  ``Runtime.OutOfMemory``. As a hard backstop the child runs under ``RLIMIT_AS`` of
  ``memory_mb + ADDRESS_SPACE_HEADROOM_MB``: address space, unlike RSS, counts reservations that
  never become resident (onnxruntime's arenas, glibc's per-thread heaps, thread stacks). Measured
  on the offline analyzer: a normal analysis peaks at ~0.6 GB resident but ~1.3 GB of address
  space, so a cap of ``memory_mb`` on address space alone would kill healthy attempts. A single
  runaway allocation (a decoder asking for gigabytes at once) fails immediately on the backstop
  (``MemoryError`` -> ``Runtime.OutOfMemory``) rather than between two samples;
- time: an invocation still running after the function's timeout is killed
  (``Sandbox.Timedout``);
- crashes: a child that dies (a signal, ``kill -9``) fails its invocation with
  ``Runtime.ExitError``.

Every failure is an ordinary invocation error for the caller: the event is retried, then
dead-lettered. A killed child is replaced by a fresh one at the next invocation. Each invocation
reports its peak resident memory (VmHWM, reset before each invocation).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from runtime.topology import Function

SAMPLE_SECONDS = 0.05
ADDRESS_SPACE_HEADROOM_MB = 2048
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Invocation:
    """How one invocation ended. ``error_type`` is None on success."""

    function: str
    duration_s: float
    peak_mb: float
    memory_mb: int
    result: Any = None
    error_type: str | None = None
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def report(self) -> dict[str, Any]:
        """Like Lambda's REPORT line: what ran, how long, and the peak memory it used."""
        return {
            "function": self.function,
            "duration_ms": round(self.duration_s * 1000),
            "memory_size_mb": self.memory_mb,
            "max_memory_used_mb": round(self.peak_mb, 1),
            "error_type": self.error_type,
        }


def address_space_limit_bytes(memory_mb: int) -> int:
    return (memory_mb + ADDRESS_SPACE_HEADROOM_MB) * 1024 * 1024


def _limit_child(memory_mb: int) -> Callable[[], None]:
    def apply() -> None:
        limit = address_space_limit_bytes(memory_mb)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        # Die with the worker, as a sandbox dies with its host (Linux only).
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sandbox:
    """One function's warm child process; see the module docstring."""

    def __init__(self, fn: Function, *, env: dict[str, str] | None = None) -> None:
        self.fn = fn
        self.env = env
        self._child: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _start(self) -> subprocess.Popen:
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("MALLOC_ARENA_MAX", "2")  # fewer glibc heaps reserving address space
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime.local.sandbox",
                self.fn.name,
                self.fn.handler,
                str(self.fn.memory_mb),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            preexec_fn=_limit_child(self.fn.memory_mb),
        )

    def invoke(
        self,
        event: dict[str, Any],
        *,
        context_timeout_s: int | None = None,
        heartbeat: Callable[[], None] | None = None,
        heartbeat_every_s: float = 5.0,
    ) -> Invocation:
        """Run the handler on ``event`` in the child; never raises for the handler's failures."""
        if self._child is None or self._child.poll() is not None:
            self._child = self._start()
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        started = time.monotonic()
        request = {"event": event, "timeout_s": context_timeout_s or self.fn.timeout_s}
        try:
            child.stdin.write(json.dumps(request).encode() + b"\n")
            child.stdin.flush()
        except BrokenPipeError:
            return self._ended(child, started, "Runtime.ExitError", "the sandbox exited")
        peak = 0.0
        beat_at = started + heartbeat_every_s
        while True:
            ready, _, _ = select.select([child.stdout], [], [], SAMPLE_SECONDS)
            if ready:
                line = child.stdout.readline()
                if not line:
                    return self._ended(child, started, "Runtime.ExitError", "the sandbox exited")
                reply = json.loads(line)
                duration = time.monotonic() - started
                peak = max(peak, float(reply.get("peak_mb", 0.0)))
                if reply.get("error_type") == "MemoryError":
                    self.close()  # its heap may be in any state: start afresh next time
                    return self._invocation(
                        duration, peak, error=("Runtime.OutOfMemory", reply["error_message"])
                    )
                if reply.get("error_type"):
                    error = (reply["error_type"], reply.get("error_message", ""))
                    return self._invocation(duration, peak, error=error)
                return self._invocation(duration, peak, result=reply.get("result"))
            rss = _rss_mb(child.pid)
            peak = max(peak, rss)
            now = time.monotonic()
            if rss > self.fn.memory_mb:
                return self._ended(
                    child,
                    started,
                    "Runtime.OutOfMemory",
                    f"{rss:.0f} MB resident exceeds the function's {self.fn.memory_mb} MB",
                )
            if now - started > self.fn.timeout_s:
                return self._ended(
                    child,
                    started,
                    "Sandbox.Timedout",
                    f"Task timed out after {self.fn.timeout_s:.2f} seconds",
                )
            if heartbeat is not None and now >= beat_at:
                heartbeat()
                beat_at = now + heartbeat_every_s

    def _ended(
        self, child: subprocess.Popen, started: float, error_type: str, message: str
    ) -> Invocation:
        """Kill the child (if it still runs), reap it, and report the invocation as failed."""
        if child.poll() is None:
            child.kill()
        peak = 0.0
        try:
            _pid, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            peak = usage.ru_maxrss / 1024
        except ChildProcessError:  # already reaped by poll()
            child.wait()
        if error_type == "Runtime.ExitError" and child.returncode is not None:
            message = f"{message} (exit status {child.returncode})"
        self._child = None
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        return self._invocation(time.monotonic() - started, peak, error=(error_type, message))

    def _invocation(
        self,
        duration: float,
        peak: float,
        *,
        result: Any = None,
        error: tuple[str, str] | None = None,
    ) -> Invocation:
        return Invocation(
            function=self.fn.name,
            duration_s=duration,
            peak_mb=peak,
            memory_mb=self.fn.memory_mb,
            result=result,
            error_type=error[0] if error else None,
            error_message=error[1] if error else "",
        )

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


# -------------------------------------------------------------------------------- the child


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def _reset_peak() -> None:
    # Resets VmHWM to the current resident set (else the peak is the process's lifetime peak).
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _serve(
    name: str, handler_path: str, memory_mb: int, requests: IO[bytes], replies: IO[bytes]
) -> None:
    import importlib

    from runtime.local.cloud import LocalContext

    module_name, _, attribute = handler_path.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)  # the init phase
    for line in requests:
        request = json.loads(line)
        _reset_peak()
        reply: dict[str, Any]
        try:
            context = LocalContext(name, memory_mb, request["timeout_s"])
            reply = {"result": handler(request["event"], context)}
        except MemoryError as error:
            reply = {"error_type": "MemoryError", "error_message": str(error) or "MemoryError"}
        except Exception as error:
            traceback.print_exc()
            reply = {"error_type": type(error).__name__, "error_message": str(error)[:2000]}
        reply["peak_mb"] = _peak_mb()
        replies.write(json.dumps(reply, default=str).encode() + b"\n")
        replies.flush()


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    # The protocol owns the original stdout; anything the handler prints goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    name, handler_path, memory_mb = sys.argv[1:4]
    _serve(name, handler_path, int(memory_mb), sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
