"""A local pipeline worker: what Lambda's event source mappings and schedules do on AWS.

Runs as its own process (``python -m runtime.local.worker``), started by ``collections dev``.
It takes events from the topology's queues and hands them to the same handlers Lambda runs;
a failed event becomes visible again and is retried, then dead-lettered, by the queue's redrive
policy. With ``--schedules`` it also runs the scheduled functions at their rate.
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
from dataclasses import dataclass
from datetime import UTC, datetime

from runtime.local.cloud import REGION, EventPump, LocalCloud, LocalContext, load_handler
from runtime.topology import FUNCTIONS, Schedule

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


def run(cloud: LocalCloud, *, schedules: bool) -> None:
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    pump = EventPump(cloud, batch_size=1)  # one event at a time: workers share the load
    now = time.monotonic()
    runs = [
        ScheduledRun(fn.name, rate_seconds(fn.trigger.expression), now + 5)
        for fn in FUNCTIONS
        if schedules and isinstance(fn.trigger, Schedule)
    ]
    while not stopping:
        handled = pump.pump_once()
        for scheduled in runs:
            if time.monotonic() >= scheduled.next_at:
                _invoke_schedule(scheduled.name)
                scheduled.next_at = time.monotonic() + scheduled.every_s
        if not handled:
            time.sleep(IDLE_SLEEP_SECONDS)


def _invoke_schedule(name: str) -> None:
    fn = next(f for f in FUNCTIONS if f.name == name)
    event = scheduled_event(name)
    try:
        load_handler(fn)(event, LocalContext(fn.name, fn.memory_mb, fn.timeout_s))
    except Exception:
        log.exception("scheduled %s failed; it runs again at its next time", name)


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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cloud = LocalCloud(**json.loads(os.environ["COLLECTIONS_LOCAL_CLOUD"]))
    run(cloud, schedules=args.schedules)


if __name__ == "__main__":
    main()
