"""Monitoring: a CloudWatch dashboard and alarms to a KMS-encrypted SNS topic (optional email
subscription).

Dashboard: HTTP API requests, ``4xx``/``5xx`` and ``Latency`` (the metric names HTTP APIs
publish under ``AWS/ApiGateway`` with the ``ApiId`` dimension); per function errors, duration and
throttles; dead-letter queue depth; RDS CPU, free storage and connections.
Alarms: any message in a dead-letter queue; any function error or throttle; any failure to
deliver an async invocation to its on-failure destination; per EventBridge rule, any invocation
that failed for good or could not reach its dead-letter queue; the API's 5xx rate; RDS free
storage and connections near max_connections. Every metric names its resource through that
resource's outputs; ``tests/infra/aws_metrics.py`` holds the AWS facts (namespace, dimensions,
unit) each alarm is checked against.

The topic is encrypted with a customer-managed key (SNS's AWS-managed key cannot be used by
CloudWatch alarms: its policy cannot be changed to let CloudWatch publish).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import MonitoringConfig
from infra.options import options_for

API_METRICS = ("Count", "4xx", "5xx", "Latency")
FUNCTION_METRICS = ("Errors", "Duration", "Throttles")
RDS_METRICS = ("CPUUtilization", "FreeStorageSpace", "DatabaseConnections")
GIB = 1024**3
# Alarm when connections reach this share of max_connections.
DB_CONNECTIONS_ALARM_SHARE = 0.8


def alarm_key_policy(account_id: str) -> str:
    """The topic key's policy: the account administers it (the default key policy, without which
    the key could become unmanageable); CloudWatch may use it to publish alarms to the topic."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchPublishesAlarms",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        }
    )


def dashboard_name(stack: str) -> str:
    return f"collections-{stack}"


def dashboard_url(region: str, name: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards/dashboard/{name}"
    )


def _widget(title: str, metrics: list[list[Any]], region: str, stat: str, y: int, x: int) -> dict:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "stat": stat,
            "period": 300,
            "view": "timeSeries",
            "metrics": metrics,
        },
    }


def dashboard_body(
    *,
    region: str,
    api_id: str,
    function_names: Mapping[str, str],
    queue_names: Mapping[str, str],
    db_instance_id: str,
) -> str:
    widgets: list[dict[str, Any]] = []
    api = [["AWS/ApiGateway", m, "ApiId", api_id] for m in ("Count", "4xx", "5xx")]
    widgets.append(_widget("API requests and errors", api, region, "Sum", 0, 0))
    latency = [["AWS/ApiGateway", "Latency", "ApiId", api_id, {"stat": s}] for s in ("p50", "p99")]
    widgets.append(_widget("API latency (ms)", latency, region, "p99", 0, 12))
    for i, metric in enumerate(FUNCTION_METRICS):
        stat = "Average" if metric == "Duration" else "Sum"
        rows = [
            ["AWS/Lambda", metric, "FunctionName", name, {"label": fn}]
            for fn, name in sorted(function_names.items())
        ]
        widgets.append(
            _widget(f"Functions: {metric}", rows, region, stat, 6 + 6 * (i // 2), 12 * (i % 2))
        )
    dlq = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", name, {"label": fn}]
        for fn, name in sorted(queue_names.items())
    ]
    widgets.append(_widget("Dead-letter queues: messages", dlq, region, "Maximum", 12, 12))
    for i, metric in enumerate(RDS_METRICS):
        rows = [["AWS/RDS", metric, "DBInstanceIdentifier", db_instance_id]]
        widgets.append(
            _widget(f"Database: {metric}", rows, region, "Average", 18 + 6 * (i // 2), 12 * (i % 2))
        )
    return json.dumps({"widgets": widgets})


class Monitoring(pulumi.ComponentResource):
    topic: aws.sns.Topic
    dashboard: aws.cloudwatch.Dashboard
    dashboard_url: pulumi.Output[str]
    alarms: dict[str, aws.cloudwatch.MetricAlarm]

    def __init__(
        self,
        name: str,
        cfg: MonitoringConfig,
        *,
        stack: str,
        region: str,
        api_id: pulumi.Input[str],
        function_names: Mapping[str, pulumi.Input[str]],
        queue_names: Mapping[str, pulumi.Input[str]],
        rules: Mapping[str, tuple[pulumi.Input[str], pulumi.Input[str | None]]],
        async_function_names: Mapping[str, pulumi.Input[str]],
        db_instance_id: pulumi.Input[str],
        db_max_connections: int,
        account_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.key = aws.kms.Key(
            f"{name}-alarms-key",
            description=f"Collections {stack}: alarm topic encryption",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(account_id).apply(alarm_key_policy),
            opts=child,
        )
        self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=self.key.arn, opts=child)
        if cfg.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=cfg.alarm_email,
                opts=child,
            )
        actions = [self.topic.arn]
        self.alarms = {}

        def alarm(key: str, **kwargs: Any) -> None:
            self.alarms[key] = aws.cloudwatch.MetricAlarm(
                f"{name}-{key}",
                alarm_actions=actions,
                ok_actions=actions,
                treat_missing_data="notBreaching",
                opts=child,
                **kwargs,
            )

        for fn, queue in sorted(queue_names.items()):
            alarm(
                f"{fn}-dlq",
                alarm_description=f"{fn}: events in the dead-letter queue",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": queue},
                statistic="Maximum",
                period=60,
                evaluation_periods=1,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
            )
        lambda_alarms = (
            ("errors", "Errors", "function errors"),
            ("throttles", "Throttles", "throttled invocations (reserved concurrency reached)"),
        )
        for fn, function in sorted(function_names.items()):
            for suffix, metric, what in lambda_alarms:
                alarm(
                    f"{fn}-{suffix}",
                    alarm_description=f"{fn}: {what}",
                    namespace="AWS/Lambda",
                    metric_name=metric,
                    dimensions={"FunctionName": function},
                    statistic="Sum",
                    period=300,
                    evaluation_periods=1,
                    threshold=0,
                    comparison_operator="GreaterThanThreshold",
                )
        for fn, function in sorted(async_function_names.items()):
            alarm(
                f"{fn}-destination-failures",
                alarm_description=f"{fn}: a failed event could not reach its dead-letter queue",
                namespace="AWS/Lambda",
                metric_name="DestinationDeliveryFailures",
                dimensions={"FunctionName": function},
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
            )
        rule_alarms = (
            ("failed-invocations", "FailedInvocations", "events that failed for good"),
            (
                "dlq-failures",
                "InvocationsFailedToBeSentToDlq",
                "events lost: the dead-letter queue refused them",
            ),
        )
        for fn, (rule_name, bus_name) in sorted(rules.items()):
            # Metrics of a rule on a custom bus carry EventBusName too; default-bus rules do not.
            dimensions = pulumi.Output.all(rule_name, bus_name).apply(
                lambda a: {"RuleName": a[0]} | ({"EventBusName": a[1]} if a[1] else {})
            )
            for suffix, metric, what in rule_alarms:
                alarm(
                    f"{fn}-rule-{suffix}",
                    alarm_description=f"{fn} rule: {what}",
                    namespace="AWS/Events",
                    metric_name=metric,
                    dimensions=dimensions,
                    statistic="Sum",
                    period=300,
                    evaluation_periods=1,
                    threshold=0,
                    comparison_operator="GreaterThanThreshold",
                )
        # For HTTP APIs the 5xx metric is 0 or 1 per request, so its Average is the error rate.
        alarm(
            "api-5xx-rate",
            alarm_description="API: share of requests answered 5xx",
            namespace="AWS/ApiGateway",
            metric_name="5xx",
            dimensions={"ApiId": api_id},
            statistic="Average",
            period=300,
            evaluation_periods=2,
            threshold=cfg.api_5xx_rate_threshold,
            comparison_operator="GreaterThanThreshold",
        )
        alarm(
            "db-free-storage",
            alarm_description="Database: free storage low",
            namespace="AWS/RDS",
            metric_name="FreeStorageSpace",
            dimensions={"DBInstanceIdentifier": db_instance_id},
            statistic="Minimum",
            period=300,
            evaluation_periods=1,
            threshold=cfg.db_free_storage_threshold_gb * GIB,
            comparison_operator="LessThanThreshold",
        )
        alarm(
            "db-connections",
            alarm_description="Database: connections near max_connections",
            namespace="AWS/RDS",
            metric_name="DatabaseConnections",
            dimensions={"DBInstanceIdentifier": db_instance_id},
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            threshold=int(db_max_connections * DB_CONNECTIONS_ALARM_SHARE),
            comparison_operator="GreaterThanOrEqualToThreshold",
        )

        fn_names = pulumi.Output.all(**function_names)
        q_names = pulumi.Output.all(**queue_names)
        body = pulumi.Output.all(api_id, fn_names, q_names, db_instance_id).apply(
            lambda a: dashboard_body(
                region=region,
                api_id=a[0],
                function_names=a[1],
                queue_names=a[2],
                db_instance_id=a[3],
            )
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=dashboard_name(stack),
            dashboard_body=body,
            opts=options_for("dashboard", protect=False, name=f"{name}-dashboard", parent=self),
        )
        self.dashboard_url = self.dashboard.dashboard_name.apply(lambda n: dashboard_url(region, n))
        self.register_outputs({"dashboardUrl": self.dashboard_url, "topicArn": self.topic.arn})
