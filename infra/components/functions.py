"""Functions: one Lambda per entry of ``runtime.topology.FUNCTIONS``.

Each function gets: its own auto-named role with an inline least-privilege policy derived from
its declared resources (:mod:`infra.iam`) that the function depends on (on a fresh stack Lambda
checks the role's permissions at creation), a log group created here with a retention, its
runtime image (``Function.image``) by digest with the handler as the image command, the
configured architecture, memory, timeout and reserved concurrency from the topology, the VPC's
private subnets when it talks to the database, active X-Ray tracing, and — when EventBridge
invokes it asynchronously — an encrypted SQS dead-letter queue used both as the async on-
failure destination and as the rule target's DLQ. The topology's dead-letter consumer reads
every one of those queues through an SQS event source mapping that batches for up to five
minutes (so the queue-depth alarm sees every dead letter), then fails each event's item.

Creation happens in two steps so the migrations can run in between: the constructor creates the
roles, log groups, queues and the migrator (the ``Deploy`` function);
:meth:`Functions.create_service_functions` then creates every other function, each depending on
the migration invocation, so no function runs new code against an old schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import FunctionsConfig
from infra.environment import RuntimeRefs, function_environment
from infra.iam import AccessTargets, assume_role_policy, function_policy, needs_vpc
from infra.options import function_depends_on, options_for, runs_before_migrations
from runtime.topology import FUNCTIONS, DeadLetters, Function, ObjectCreated, OnEvent, Schedule

DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum
# The consumer gathers dead letters for up to five minutes (the SQS maximum) before it fails
# their items: they stay visible meanwhile, so the alarm on each queue's depth fires for every
# one (it samples per minute; a consumer polling at once would empty the queue in between).
DEAD_LETTER_BATCH_SIZE = 100
DEAD_LETTER_BATCHING_WINDOW_SECONDS = 300


def async_functions(topology: Sequence[Function]) -> tuple[Function, ...]:
    """Invoked asynchronously by EventBridge: retries, a DLQ and an on-failure destination."""
    return tuple(f for f in topology if isinstance(f.trigger, ObjectCreated | OnEvent | Schedule))


def image_config(fn: Function) -> dict[str, list[str]]:
    """The image's entry point takes the handler's dotted path as its command."""
    return {"commands": [fn.handler]}


def async_invoke_config(fn: Function) -> dict[str, int]:
    return {
        "maximum_retry_attempts": fn.retry.maximum_retry_attempts,
        "maximum_event_age_in_seconds": fn.retry.maximum_event_age_seconds,
    }


@dataclass(frozen=True)
class TargetArns:
    """The ARNs behind the topology's ``Resource`` values, as outputs."""

    bucket_arn: pulumi.Input[str]
    db_secret_arn: pulumi.Input[str]
    db_user_arn_prefix: pulumi.Input[str]
    event_bus_arn: pulumi.Input[str]
    idempotency_table_arn: pulumi.Input[str]
    anthropic_param_arn: pulumi.Input[str]
    voyage_param_arn: pulumi.Input[str]
    conversations_table_arn: pulumi.Input[str]
    cursor_param_arn: pulumi.Input[str]
    tavily_param_arn: pulumi.Input[str] | None = None

    def resolve(self) -> pulumi.Output[AccessTargets]:
        return pulumi.Output.all(**self.__dict__).apply(lambda d: AccessTargets(**d))


class Functions(pulumi.ComponentResource):
    lambdas: dict[str, aws.lambda_.Function]
    roles: dict[str, aws.iam.Role]
    log_groups: dict[str, aws.cloudwatch.LogGroup]
    dead_letter_queues: dict[str, aws.sqs.Queue]

    def __init__(
        self,
        name: str,
        cfg: FunctionsConfig,
        *,
        stack: str,
        image_uris: Mapping[str, pulumi.Input[str]],
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_id: pulumi.Input[str],
        refs: RuntimeRefs,
        targets: TargetArns,
        topology: Sequence[Function] = FUNCTIONS,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:functions:Functions", name, None, opts)
        self._name = name
        self._cfg = cfg
        self._image_uris = image_uris
        self._subnet_ids = subnet_ids
        self._security_group_id = security_group_id
        self._refs = refs
        self.topology = tuple(topology)
        self.lambdas = {}
        self.roles = {}
        self.role_policies: dict[str, aws.iam.RolePolicy] = {}
        self.log_groups = {}
        self.dead_letter_queues = {}
        self.invoke_configs: dict[str, aws.lambda_.FunctionEventInvokeConfig] = {}
        self.dead_letter_mappings: dict[str, aws.lambda_.EventSourceMapping] = {}
        child = pulumi.ResourceOptions(parent=self)

        consumer = dead_letter_consumer_of(self.topology)
        for fn in async_functions(self.topology):
            self.dead_letter_queues[fn.name] = aws.sqs.Queue(
                f"{name}-{fn.name}-dlq",
                sqs_managed_sse_enabled=True,
                message_retention_seconds=DLQ_RETENTION_SECONDS,
                visibility_timeout_seconds=dead_letter_visibility_timeout(consumer),
                opts=child,
            )
        resolved_targets = pulumi.Output.all(
            targets.resolve(), *(q.arn for q in self.dead_letter_queues.values())
        ).apply(lambda a: replace(a[0], dead_letter_queue_arns=tuple(a[1:])))

        for fn in self.topology:
            log_group = aws.cloudwatch.LogGroup(
                f"{name}-{fn.name}-logs",
                name_prefix=f"/collections/{stack}/{fn.name}-",
                retention_in_days=cfg.log_retention_days,
                opts=child,
            )
            dlq = self.dead_letter_queues.get(fn.name)
            role = aws.iam.Role(
                f"{name}-{fn.name}-role",
                description=f"Collections {stack}: {fn.name} function",
                assume_role_policy=json.dumps(assume_role_policy()),
                opts=child,
            )
            policy = pulumi.Output.all(
                targets=resolved_targets,
                log_group_arn=log_group.arn,
                dlq_arn=dlq.arn if dlq is not None else None,
            ).apply(
                lambda a, fn=fn: json.dumps(
                    function_policy(
                        fn,
                        a["targets"],
                        log_group_arn=a["log_group_arn"],
                        dead_letter_queue_arn=a["dlq_arn"],
                    )
                )
            )
            self.role_policies[fn.name] = aws.iam.RolePolicy(
                f"{name}-{fn.name}-policy", role=role.id, policy=policy, opts=child
            )
            self.roles[fn.name] = role
            self.log_groups[fn.name] = log_group

        for fn in self.topology:
            if runs_before_migrations(fn):
                self._create(fn, gates=())

    def create_service_functions(self, migration_gates: Sequence[pulumi.Resource]) -> None:
        """Create every function that serves traffic, after ``migration_gates``."""
        for fn in self.topology:
            if not runs_before_migrations(fn):
                self._create(fn, gates=migration_gates)
        self.register_outputs(
            {
                "functionNames": {n: f.name for n, f in self.lambdas.items()},
                "deadLetterQueueUrls": {n: q.url for n, q in self.dead_letter_queues.items()},
            }
        )

    def deploy_functions(self) -> list[tuple[Function, aws.lambda_.Function]]:
        return [(fn, self.lambdas[fn.name]) for fn in self.topology if runs_before_migrations(fn)]

    def spec(self, name: str) -> Function:
        for fn in self.topology:
            if fn.name == name:
                return fn
        raise KeyError(name)

    def _create(self, fn: Function, gates: Sequence[pulumi.Resource]) -> None:
        name, cfg = self._name, self._cfg
        env: Mapping[str, Any] = function_environment(fn, self._refs)
        vpc_config = (
            {"subnet_ids": self._subnet_ids, "security_group_ids": [self._security_group_id]}
            if needs_vpc(fn)
            else None
        )
        depends_on: list[pulumi.Resource] = [self.role_policies[fn.name]]
        depends_on += function_depends_on(fn, gates)
        function = aws.lambda_.Function(
            f"{name}-{fn.name}",
            # No `name`: auto-named, so a replacement is created before the old one is deleted.
            description=fn.description,
            package_type="Image",
            image_uri=self._image_uris[fn.image],  # the function's own image, by digest
            image_config=image_config(fn),
            architectures=[cfg.architecture],
            memory_size=fn.memory_mb,
            timeout=fn.timeout_s,
            reserved_concurrent_executions=fn.reserved_concurrency,
            role=self.roles[fn.name].arn,
            environment={"variables": dict(env)},
            vpc_config=vpc_config,
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "JSON", "log_group": self.log_groups[fn.name].name},
            opts=options_for(
                "function",
                protect=False,
                name=f"{name}-{fn.name}",
                parent=self,
                depends_on=depends_on,
            ),
        )
        self.lambdas[fn.name] = function
        if isinstance(fn.trigger, DeadLetters):
            self._consume_dead_letters(fn, function)
        dlq = self.dead_letter_queues.get(fn.name)
        if dlq is not None:
            self.invoke_configs[fn.name] = aws.lambda_.FunctionEventInvokeConfig(
                f"{name}-{fn.name}-async",
                function_name=function.name,
                **async_invoke_config(fn),
                destination_config={"on_failure": {"destination": dlq.arn}},
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _consume_dead_letters(self, fn: Function, function: aws.lambda_.Function) -> None:
        """An SQS event source from every dead-letter queue to the consumer, which reports
        failures per record (a record it cannot settle now is delivered again, alone)."""
        for source, queue in self.dead_letter_queues.items():
            self.dead_letter_mappings[source] = aws.lambda_.EventSourceMapping(
                f"{self._name}-{source}-dlq-to-{fn.name}",
                event_source_arn=queue.arn,
                function_name=function.arn,
                batch_size=DEAD_LETTER_BATCH_SIZE,
                maximum_batching_window_in_seconds=DEAD_LETTER_BATCHING_WINDOW_SECONDS,
                function_response_types=["ReportBatchItemFailures"],
                # The role must be able to read the queue before the mapping is created.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policies[fn.name]]),
            )


def dead_letter_consumer_of(topology: Sequence[Function]) -> Function | None:
    consumers = [f for f in topology if isinstance(f.trigger, DeadLetters)]
    if len(consumers) > 1:
        raise ValueError("the topology declares more than one dead-letter consumer")
    return consumers[0] if consumers else None


def dead_letter_visibility_timeout(consumer: Function | None) -> int:
    """AWS requires a queue's visibility timeout to cover its consumer's timeout (plus the
    batching window); it advises six times the timeout, so a batch retried by the event source
    is not delivered twice at once."""
    if consumer is None:
        return 30
    return 6 * consumer.timeout_s + DEAD_LETTER_BATCHING_WINDOW_SECONDS
