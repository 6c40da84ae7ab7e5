"""The AWS side of local mode, on a local emulator endpoint (moto's server), built from the same
topology the Pulumi program deploys: the bucket with EventBridge notifications, the pipeline bus,
one rule -> queue (with a dead-letter queue) per event-triggered function, the idempotency table.
``EventPump`` then delivers queued events to the handlers the way Lambda's asynchronous
invocation would: the same event JSON, retried, then dead-lettered with the last error, and the
dead letters to the topology's dead-letter consumer.
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
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import boto3

from runtime.topology import (
    FUNCTIONS,
    Function,
    ObjectCreated,
    OnEvent,
    dead_letter_consumer,
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
    # Local stand-in for a function's timeout where only a dead attempt is concerned: how long
    # before the event of a worker that died is delivered again, and the invocation time the
    # handler sees (None: the topology's timeout, as on Lambda). A live attempt keeps its event
    # invisible (heartbeats) and is cut at the topology's timeout by its sandbox.
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
                # The pump dead-letters after the topology's attempts, with the last error (as
                # Lambda's on-failure destination does); the queue's own redrive is a backstop
                # for an event whose worker keeps dying.
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": str(fn.retry.maximum_retry_attempts + 2),
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


@dataclass(frozen=True)
class Attempt:
    """How one delivery ended (``error_type`` None: success)."""

    error_type: str | None = None
    error_message: str = ""
    result: Any = None


# Runs a function's handler on an event: (function, event, context timeout, heartbeat).
Invoker = Callable[[Function, dict, int, Callable[[], None]], Attempt]


def invoke_in_process(
    fn: Function, event: dict, timeout_s: int, heartbeat: Callable[[], None]
) -> Attempt:
    """Run the handler in this process (the tests' pump; workers use sandboxes)."""
    try:
        result = load_handler(fn)(event, LocalContext(fn.name, fn.memory_mb, timeout_s))
    except Exception as error:
        log.exception("%s failed on event %s; it will be retried", fn.name, event.get("id"))
        return Attempt(type(error).__name__, str(error))
    return Attempt(result=result)


def failure_record(fn: Function, event: dict, attempt: Attempt, invocations: int) -> dict:
    """What Lambda sends to an asynchronous invocation's on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:000000000000:function:{fn.name}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": invocations,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorType": attempt.error_type,
            "errorMessage": attempt.error_message,
        },
    }


def queue_arn_of(url: str) -> str:
    """The ARN of a queue from its URL (``…/<account>/<name>``)."""
    account, name = url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{REGION}:{account}:{name}"


@dataclass
class EventPump:
    """Delivers queued events to their handlers like Lambda's asynchronous invocation: the
    topology's retries (``retry_delay_seconds`` apart), then a failure record (the event and the
    last error) in the function's dead-letter queue; and delivers those records to the
    dead-letter consumer, as an SQS event source would."""

    cloud: LocalCloud
    retry_delay_seconds: int = RETRY_DELAY_SECONDS
    batch_size: int = 10
    invoker: Invoker = invoke_in_process
    delivered: int = 0
    failures: int = 0
    dead_lettered: int = 0
    # Dead-letter queues are polled when this pump dead-lettered something, else at most this
    # often (another worker's dead letters, records the consumer asked to see again).
    dead_letter_poll_seconds: float = 5.0
    _consumed: tuple[int, float] = (0, 0.0)

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
            for message in self._receive(url):
                handled += 1
                self._deliver(sqs, fn, url, message)
        handled += self._consume_dead_letters()
        return handled

    def _receive(self, url: str) -> list[dict]:
        return self._sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _visibility(self, fn: Function) -> int:
        return self.cloud.attempt_timeout_s or fn.timeout_s

    def _deliver(self, sqs: Any, fn: Function, url: str, message: dict) -> None:
        event = json.loads(message["Body"])
        receipt = message["ReceiptHandle"]
        attempts = fn.retry.maximum_retry_attempts + 1
        received = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if received > attempts:
            # Its last attempt died with its worker (nothing reported back): dead-letter it.
            died = Attempt("Runtime.ExitError", "the worker running the attempt died")
            self._dead_letter(sqs, fn, url, receipt, event, died, received - 1)
            return
        visibility = self._visibility(fn)

        def heartbeat() -> None:  # a live attempt keeps its event from being delivered again
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=visibility
            )

        attempt = self.invoker(fn, event, visibility, heartbeat)
        if attempt.error_type is None:
            self.delivered += 1
            sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
            return
        self.failures += 1
        if received >= attempts:
            self._dead_letter(sqs, fn, url, receipt, event, attempt, received)
            return
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=self.retry_delay_seconds
        )

    def _dead_letter(
        self,
        sqs: Any,
        fn: Function,
        url: str,
        receipt: str,
        event: dict,
        attempt: Attempt,
        invocations: int,
    ) -> None:
        record = failure_record(fn, event, attempt, invocations)
        sqs.send_message(
            QueueUrl=self.cloud.dead_letter_queues[fn.name], MessageBody=json.dumps(record)
        )
        sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
        self.dead_lettered += 1
        log.warning(
            "! %s: event %s dead-lettered after %d attempt(s): %s: %s",
            fn.name,
            event.get("id"),
            invocations,
            attempt.error_type,
            attempt.error_message[:300],
        )

    def _consume_dead_letters(self) -> int:
        """Hand each dead-letter queue's records to the consumer, as an SQS event source."""
        consumer = dead_letter_consumer()
        handled = 0
        seen, at = self._consumed
        if seen == self.dead_lettered and time.monotonic() - at < self.dead_letter_poll_seconds:
            return 0
        self._consumed = (self.dead_lettered, time.monotonic())
        for url in self.cloud.dead_letter_queues.values():
            messages = self._receive(url)
            if not messages:
                continue
            handled += len(messages)
            arn = queue_arn_of(url)
            batch = {"Records": [_sqs_record(m, arn) for m in messages]}
            attempt = self.invoker(consumer, batch, self._visibility(consumer), lambda: None)
            if attempt.error_type is not None:
                continue  # the records become visible again and are retried
            # A partial batch response names the records to deliver again.
            result = attempt.result if isinstance(attempt.result, dict) else {}
            again = {f.get("itemIdentifier") for f in result.get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in again:
                    self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return handled

    def pending(self) -> int:
        sqs = self._sqs
        total = 0
        for url in [*self.cloud.queues.values(), *self.cloud.dead_letter_queues.values()]:
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
        """Pump until no message is waiting or in flight (retries and dead letters included)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pump_once() == 0:
                if self.pending() == 0:
                    return
                time.sleep(0.2)
        raise TimeoutError(f"events still pending after {timeout_s} s")


def _sqs_record(message: dict, queue_arn: str) -> dict:
    """An SQS message as Lambda's SQS event source hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "dataType": value.get("DataType", "String"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
