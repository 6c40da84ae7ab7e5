"""Events: the pipeline's custom EventBridge bus, and one rule per asynchronous function of the
topology:

- ``ObjectCreated``: S3 "Object Created" events arrive on the account's *default* bus (S3's
  EventBridge notifications), so that rule lives there, filtered to this bucket and the key
  wildcard;
- ``OnEvent``: the pipeline's own events on the custom bus, by source and detail-type;
- ``Schedule``: a schedule expression (schedules only exist on the default bus).

Every target has a retry policy (from the topology) and the function's encrypted SQS
dead-letter queue; the queue's policy admits EventBridge for that rule only; a Lambda permission
lets that rule (and nothing else) invoke the function.

The bus is created first (functions need its name and ARN); :meth:`Events.connect` adds the
rules once the functions exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.environment import EVENT_SOURCE
from runtime.topology import (
    Function,
    ObjectCreated,
    OnEvent,
    Schedule,
    event_pattern,
    uses_default_bus,
)


@dataclass(frozen=True)
class RuleSpec:
    """Where a function's rule lives and what it matches (``bus`` None = the default bus)."""

    bus: str | None
    pattern: dict[str, Any] | None
    schedule: str | None


def rule_spec(fn: Function, *, bucket_name: str, bus_name: str) -> RuleSpec:
    """The same patterns local mode uses (``runtime.topology.event_pattern``)."""
    trigger = fn.trigger
    if isinstance(trigger, Schedule):
        return RuleSpec(None, None, trigger.expression)  # schedules live on the default bus
    if isinstance(trigger, ObjectCreated | OnEvent):
        pattern = event_pattern(fn, bucket=bucket_name, source=EVENT_SOURCE)
        return RuleSpec(None if uses_default_bus(fn) else bus_name, pattern, None)
    raise ValueError(f"function {fn.name!r} is not triggered by EventBridge")


def retry_policy(fn: Function) -> dict[str, int]:
    return {
        "maximum_retry_attempts": fn.retry.maximum_retry_attempts,
        "maximum_event_age_in_seconds": fn.retry.maximum_event_age_seconds,
    }


def dlq_policy(queue_arn: str, rule_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EventBridgeDeadLetters",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
    )


class Events(pulumi.ComponentResource):
    bus: aws.cloudwatch.EventBus
    rules: dict[str, aws.cloudwatch.EventRule]
    targets: dict[str, aws.cloudwatch.EventTarget]
    permissions: dict[str, aws.lambda_.Permission]

    def __init__(self, name: str, *, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("collections:events:Events", name, None, opts)
        self._name = name
        self.bus = aws.cloudwatch.EventBus(
            f"{name}-bus",
            description="Collections pipeline events",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.rules = {}
        # Function -> the bus its rule lives on (None: the default bus), for the rule's metrics.
        self.rule_buses: dict[str, pulumi.Output[str | None]] = {}
        self.targets = {}
        self.permissions = {}

    def connect(
        self,
        functions: Sequence[Function],
        *,
        lambdas: Mapping[str, aws.lambda_.Function],
        dead_letter_queues: Mapping[str, aws.sqs.Queue],
        bucket_name: pulumi.Input[str],
    ) -> None:
        name = self._name
        child = pulumi.ResourceOptions(parent=self)
        for fn in functions:
            spec = pulumi.Output.all(bucket_name, self.bus.name).apply(
                lambda a, fn=fn: rule_spec(fn, bucket_name=a[0], bus_name=a[1])
            )
            bus_name = spec.apply(lambda s: s.bus)
            rule = aws.cloudwatch.EventRule(
                f"{name}-{fn.name}",
                description=f"{fn.name}: {fn.description}",
                event_bus_name=bus_name,
                event_pattern=spec.apply(lambda s: json.dumps(s.pattern) if s.pattern else None),
                schedule_expression=spec.apply(lambda s: s.schedule),
                opts=child,
            )
            function = lambdas[fn.name]
            dlq = dead_letter_queues[fn.name]
            aws.sqs.QueuePolicy(
                f"{name}-{fn.name}-dlq-policy",
                queue_url=dlq.url,
                policy=pulumi.Output.all(dlq.arn, rule.arn).apply(lambda a: dlq_policy(*a)),
                opts=child,
            )
            self.permissions[fn.name] = aws.lambda_.Permission(
                f"{name}-{fn.name}-invoke",
                action="lambda:InvokeFunction",
                function=function.name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=child,
            )
            self.targets[fn.name] = aws.cloudwatch.EventTarget(
                f"{name}-{fn.name}-target",
                rule=rule.name,
                event_bus_name=bus_name,
                arn=function.arn,
                retry_policy=retry_policy(fn),
                dead_letter_config={"arn": dlq.arn},
                opts=child,
            )
            self.rules[fn.name] = rule
            self.rule_buses[fn.name] = bus_name
        self.register_outputs(
            {"busName": self.bus.name, "ruleArns": {n: r.arn for n, r in self.rules.items()}}
        )
