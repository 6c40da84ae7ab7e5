"""The AWS side of local mode, on a local emulator endpoint (moto's server), built from the same
topology the Pulumi program deploys: the bucket with EventBridge notifications, the pipeline bus,
one rule -> queue (with a dead-letter queue after the topology's retry count) per event-triggered
function, the idempotency table. ``EventPump`` then delivers queued events to the handlers the
way Lambda's asynchronous invocation would: the same event JSON, retried, then dead-lettered.
"""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3

from runtime.topology import (
    FUNCTIONS,
    Function,
    ObjectCreated,
    OnEvent,
    event_pattern,
    uses_default_bus,
)

log = logging.getLogger(__name__)

REGION = "us-east-1"

# The whole event, as AWS delivers it to a target with no transformer. moto's server leaves
# "account" out of its default target input; spelling the shape out keeps it.
_FIELDS = ("id", "detail-type", "source", "account", "time", "region", "resources", "detail")
FULL_EVENT_TRANSFORMER = {
    "InputPathsMap": {name: f"$.{name}" for name in _FIELDS},
    "InputTemplate": (
        '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
        '"account": "<account>", "time": <time>, "region": "<region>", '
        '"resources": <resources>, "detail": <detail>}'
    ),
}
RETRY_DELAY_SECONDS = 1


def start_emulator(
    port: int, host: str = "127.0.0.1", log_path: str | None = None
) -> subprocess.Popen:
    """Start moto's server on loopback and wait until it answers."""
    command = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    if log_path:
        with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    else:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{host}:{port}/moto-api/", timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the AWS emulator did not start on {host}:{port}") from None
            time.sleep(0.1)


@dataclass
class LocalContext:
    """Enough of Lambda's context object for Powertools (logger, idempotency)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@dataclass
class LocalCloud:
    endpoint: str
    stack: str
    bucket: str
    bus_name: str
    idempotency_table: str
    conversations_table: str = ""
    # Local stand-in for a function's timeout: how long an attempt may run before its event is
    # delivered again (None: the topology's timeout, as on Lambda).
    attempt_timeout_s: int | None = None
    queues: dict[str, str] = field(default_factory=dict)  # function name -> queue URL
    dead_letter_queues: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def environment(self) -> dict[str, str]:
        """The settings a handler needs to use these resources (COLLECTIONS_* variables)."""
        return {
            "COLLECTIONS_STACK": self.stack,
            "COLLECTIONS_REGION": REGION,
            "COLLECTIONS_AWS_ENDPOINT_URL": self.endpoint,
            "COLLECTIONS_BUCKET": self.bucket,
            "COLLECTIONS_EVENT_BUS_NAME": self.bus_name,
            "COLLECTIONS_IDEMPOTENCY_TABLE": self.idempotency_table,
            "COLLECTIONS_CONVERSATIONS_TABLE": self.conversations_table,
            # The emulator keeps expired items: the cleanup deletes them (DynamoDB TTL on AWS).
            "COLLECTIONS_CONVERSATIONS_SWEEP_EXPIRED": "true",
        }

    def dead_letters(self) -> dict[str, int]:
        sqs = self.client("sqs")
        counts = {}
        for name, url in self.dead_letter_queues.items():
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            counts[name] = int(attributes["ApproximateNumberOfMessages"])
        return counts


def bootstrap(
    endpoint: str,
    *,
    stack: str,
    bucket: str | None = None,
    visibility_timeout_s: int | None = None,
) -> LocalCloud:
    """Create (or find again) the stack's resources on the emulator. Safe to call twice."""
    cloud = LocalCloud(
        endpoint=endpoint,
        stack=stack,
        bucket=bucket or f"collections-{stack}",
        bus_name=f"collections-{stack}",
        idempotency_table=f"collections-{stack}-idempotency",
        conversations_table=f"collections-{stack}-conversations",
        attempt_timeout_s=visibility_timeout_s,
    )
    s3, events, sqs = cloud.client("s3"), cloud.client("events"), cloud.client("sqs")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if cloud.bucket not in existing:
        s3.create_bucket(Bucket=cloud.bucket)
    s3.put_bucket_notification_configuration(
        Bucket=cloud.bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    buses = {b["Name"] for b in events.list_event_buses()["EventBuses"]}
    if cloud.bus_name not in buses:
        events.create_event_bus(Name=cloud.bus_name)

    for fn in FUNCTIONS:
        pattern = event_pattern(fn, bucket=cloud.bucket)
        if pattern is None:
            continue
        dlq_url = sqs.create_queue(QueueName=f"{cloud.stack}-{fn.name}-dlq")["QueueUrl"]
        dlq_arn = _queue_arn(sqs, dlq_url)
        queue_url = _ensure_queue(
            sqs,
            f"{cloud.stack}-{fn.name}",
            {
                # An attempt that dies (a killed worker) is retried once this has passed.
                "VisibilityTimeout": str(cloud.attempt_timeout_s or fn.timeout_s),
                # First delivery + the topology's retries, then the dead-letter queue.
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": str(fn.retry.maximum_retry_attempts + 1),
                    }
                ),
            },
        )
        bus = "default" if uses_default_bus(fn) else cloud.bus_name
        rule = f"{cloud.stack}-{fn.name}"
        events.put_rule(
            Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED"
        )
        events.put_targets(
            Rule=rule,
            EventBusName=bus,
            Targets=[
                {
                    "Id": fn.name,
                    "Arn": _queue_arn(sqs, queue_url),
                    "InputTransformer": FULL_EVENT_TRANSFORMER,
                }
            ],
        )
        cloud.queues[fn.name] = queue_url
        cloud.dead_letter_queues[fn.name] = dlq_url

    dynamodb = cloud.client("dynamodb")
    if cloud.idempotency_table not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=cloud.idempotency_table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    ensure_conversations_table(dynamodb, cloud.conversations_table)
    return cloud


def ensure_conversations_table(dynamodb: Any, name: str) -> None:
    """The conversations table as the Pulumi program declares it: pk/sk, TTL on expires_at."""
    from runtime.adapters.conversations import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

    if name in dynamodb.list_tables()["TableNames"]:
        return
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def _ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    """Create the queue, or bring an existing one (from an earlier start) to these attributes."""
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def load_handler(fn: Function) -> Callable[[dict, Any], Any]:
    module_name, _, attribute = fn.handler.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass
class EventPump:
    """Delivers queued events to their handlers, with retries and dead-lettering like AWS."""

    cloud: LocalCloud
    retry_delay_seconds: int = RETRY_DELAY_SECONDS
    batch_size: int = 10
    delivered: int = 0
    failures: int = 0

    @cached_property
    def _sqs(self) -> Any:
        return self.cloud.client("sqs")

    def pump_once(self) -> int:
        """Receive and handle what is waiting now; return how many messages were handled."""
        sqs = self._sqs
        handled = 0
        for fn in FUNCTIONS:
            if not isinstance(fn.trigger, ObjectCreated | OnEvent):
                continue
            url = self.cloud.queues[fn.name]
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=0,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            for message in messages:
                handled += 1
                self._deliver(sqs, fn, url, message)
        return handled

    def _deliver(self, sqs: Any, fn: Function, url: str, message: dict) -> None:
        event = json.loads(message["Body"])
        try:
            load_handler(fn)(
                event,
                LocalContext(fn.name, fn.memory_mb, self.cloud.attempt_timeout_s or fn.timeout_s),
            )
        except Exception:
            self.failures += 1
            log.exception("%s failed on event %s; it will be retried", fn.name, event.get("id"))
            sqs.change_message_visibility(
                QueueUrl=url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=self.retry_delay_seconds,
            )
            return
        self.delivered += 1
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def pending(self) -> int:
        sqs = self._sqs
        total = 0
        for url in self.cloud.queues.values():
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            total += int(attributes["ApproximateNumberOfMessages"])
            total += int(attributes["ApproximateNumberOfMessagesNotVisible"])
        return total

    def drain(self, timeout_s: float = 120.0) -> None:
        """Pump until no message is waiting or in flight (retries included)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pump_once() == 0:
                if self.pending() == 0:
                    return
                time.sleep(0.2)
        raise TimeoutError(f"events still pending after {timeout_s} s")
