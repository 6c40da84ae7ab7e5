"""A local pipeline worker: what Lambda's asynchronous invocation and schedules do on AWS.

Runs as its own process (``python -m runtime.local.worker``), started by ``collections dev``.
It takes events from the topology's queues and runs the same handlers Lambda runs, each function
in its own :class:`~runtime.local.sandbox.Sandbox`: a warm child process held to the function's
``memory_mb`` and timeout, so a runaway attempt is killed like a Lambda out of memory and the
worker carries on. A failed event is retried, then dead-lettered with its last error, and the
dead letters go to the topology's dead-letter consumer (see ``EventPump``). With ``--schedules``
it also runs the scheduled functions at their rate.

Every invocation is reported like Lambda's REPORT line, one JSON object per line in the
``--reports`` file (function, the event and the item it was about, duration, memory size, max
memory used, error type).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runtime.events import item_of
from runtime.local.cloud import REGION, Attempt, EventPump, LocalCloud
from runtime.local.sandbox import Sandbox
from runtime.topology import FUNCTIONS, Function, Schedule

log = logging.getLogger("collections.worker")
IDLE_SLEEP_SECONDS = 0.5
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    match = _RATE.match(expression)
    if not match:
        raise ValueError(f"local mode runs rate() schedules only, not {expression!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2].rstrip("s")]


@dataclass
class ScheduledRun:
    name: str
    every_s: int
    next_at: float


class SandboxInvoker:
    """Runs each function's invocations in that function's sandbox, and reports them."""

    def __init__(self, reports: Path | None = None) -> None:
        self.reports = reports
        self.sandboxes: dict[str, Sandbox] = {}

    def __call__(
        self, fn: Function, event: dict, timeout_s: int, heartbeat: Callable[[], None]
    ) -> Attempt:
        sandbox = self.sandboxes.get(fn.name)
        if sandbox is None:
            sandbox = self.sandboxes[fn.name] = Sandbox(fn)
        invocation = sandbox.invoke(
            event,
            context_timeout_s=timeout_s,
            heartbeat=heartbeat,
            heartbeat_every_s=max(1.0, timeout_s / 3),
        )
        if not invocation.ok:
            log.warning(
                "%s failed on event %s: %s: %s",
                fn.name,
                event.get("id"),
                invocation.error_type,
                invocation.error_message[:300],
            )
        if self.reports is not None:
            line = {
                "time": datetime.now(UTC).isoformat(),
                "event_id": event.get("id"),
                "item_id": item_of(event),
                "pid": os.getpid(),
                **invocation.report(),
            }
            with self.reports.open("a") as out:
                out.write(json.dumps(line) + "\n")
        return Attempt(invocation.error_type, invocation.error_message, invocation.result)

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.close()


def run(cloud: LocalCloud, *, schedules: bool, reports: Path | None = None) -> None:
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    invoker = SandboxInvoker(reports)
    pump = EventPump(cloud, batch_size=1, invoker=invoker)  # one event at a time per worker
    now = time.monotonic()
    runs = [
        ScheduledRun(fn.name, rate_seconds(fn.trigger.expression), now + 5)
        for fn in FUNCTIONS
        if schedules and isinstance(fn.trigger, Schedule)
    ]
    try:
        while not stopping:
            handled = pump.pump_once()
            for scheduled in runs:
                if time.monotonic() >= scheduled.next_at:
                    fn = next(f for f in FUNCTIONS if f.name == scheduled.name)
                    invoker(fn, scheduled_event(fn.name), fn.timeout_s, lambda: None)
                    scheduled.next_at = time.monotonic() + scheduled.every_s
            if not handled:
                time.sleep(IDLE_SLEEP_SECONDS)
    finally:
        invoker.close()


def scheduled_event(rule: str) -> dict:
    """The event an EventBridge schedule delivers to its target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:000000000000:rule/{rule}"],
        "detail": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", action="store_true", help="also run scheduled functions")
    parser.add_argument("--reports", type=Path, help="append one JSON line per invocation here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cloud = LocalCloud(**json.loads(os.environ["COLLECTIONS_LOCAL_CLOUD"]))
    run(cloud, schedules=args.schedules, reports=args.reports)


if __name__ == "__main__":
    main()
