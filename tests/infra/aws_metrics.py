"""Facts about the CloudWatch metrics the alarms use, each with its source (AWS documentation).

An alarm that names a metric AWS does not publish, with dimensions AWS does not attach, compares
in the wrong direction or has a threshold in the wrong unit is accepted by CloudWatch and never
fires. The alarm tests check every alarm of the program against this table, which is written
from the documentation, not from the program.
"""

from __future__ import annotations

from dataclasses import dataclass

LAMBDA_METRICS = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html"
SQS_METRICS = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/"
    "sqs-available-cloudwatch-metrics.html"
)
EVENTS_METRICS = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html"
HTTP_API_METRICS = (
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html"
)
RDS_METRICS = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-metrics.html"
HTTP_API_QUOTAS = (
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html"
)
LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
SNS_SSE = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"


@dataclass(frozen=True)
class MetricFact:
    namespace: str
    name: str
    unit: str  # the unit CloudWatch stores: a threshold is compared in this unit
    # Dimension sets AWS attaches (an alarm must use exactly one of them, or it sees no data).
    dimension_sets: tuple[frozenset[str], ...]
    # Statistics that answer "did this happen / how much": e.g. Sum of a count, Average of 0/1.
    statistics: frozenset[str]
    # Which direction is trouble: "high" (alarm when above) or "low" (when below).
    trouble: str
    # Published only when non-zero (missing data then means "nothing happened").
    sparse: bool
    source: str


def _dims(*sets: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(s) for s in sets)


COUNT_STATS = frozenset({"Sum"})

_ALL = (
    # Lambda: "Errors", "Throttles", "DestinationDeliveryFailures" are counts per function
    # (dimension FunctionName); the useful statistic is Sum.
    MetricFact("AWS/Lambda", "Errors", "Count", _dims(("FunctionName",)), COUNT_STATS, "high",
               True, LAMBDA_METRICS),
    MetricFact("AWS/Lambda", "Throttles", "Count", _dims(("FunctionName",)), COUNT_STATS, "high",
               True, LAMBDA_METRICS),
    MetricFact("AWS/Lambda", "DestinationDeliveryFailures", "Count", _dims(("FunctionName",)),
               COUNT_STATS, "high", True, LAMBDA_METRICS),
    # SQS: messages waiting in a queue nobody consumes: ApproximateNumberOfMessagesVisible
    # (Count, dimension QueueName). NumberOfMessagesReceived counts *receives* and stays 0 on a
    # dead-letter queue with no consumer; NumberOfMessagesSent is not incremented for messages a
    # service moves to a dead-letter queue.
    MetricFact("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Count", _dims(("QueueName",)),
               frozenset({"Maximum", "Average", "Sum"}), "high", False, SQS_METRICS),
    # EventBridge: per rule; "Metrics that specify only the RuleName dimension refer to the
    # default event bus. Metrics that specify both the EventBusName and RuleName dimensions refer
    # to a custom event bus." Only sent when non-zero.
    MetricFact("AWS/Events", "FailedInvocations", "Count",
               _dims(("RuleName",), ("EventBusName", "RuleName")), COUNT_STATS, "high", True,
               EVENTS_METRICS),
    MetricFact("AWS/Events", "InvocationsFailedToBeSentToDlq", "Count",
               _dims(("RuleName",), ("EventBusName", "RuleName")), COUNT_STATS, "high", True,
               EVENTS_METRICS),
    # HTTP APIs publish "4xx"/"5xx"/"Count" (not REST's 4XXError/5XXError) with ApiId (and
    # Stage); each request is a 0/1 data point of 5xx, so Average is the error rate.
    MetricFact("AWS/ApiGateway", "5xx", "Count", _dims(("ApiId",), ("ApiId", "Stage")),
               frozenset({"Average"}), "high", False, HTTP_API_METRICS),
    # RDS: FreeStorageSpace in Bytes, DatabaseConnections a Count, per DBInstanceIdentifier.
    MetricFact("AWS/RDS", "FreeStorageSpace", "Bytes", _dims(("DBInstanceIdentifier",)),
               frozenset({"Minimum", "Average"}), "low", False, RDS_METRICS),
    MetricFact("AWS/RDS", "DatabaseConnections", "Count", _dims(("DBInstanceIdentifier",)),
               frozenset({"Maximum", "Average"}), "high", False, RDS_METRICS),
)  # fmt: skip
FACTS: dict[tuple[str, str], MetricFact] = {(f.namespace, f.name): f for f in _ALL}

# Comparison operators by the direction they alarm in.
HIGH = frozenset({"GreaterThanThreshold", "GreaterThanOrEqualToThreshold"})
LOW = frozenset({"LessThanThreshold", "LessThanOrEqualToThreshold"})

# Limits (with sources) the program must stay within.
HTTP_API_MAX_INTEGRATION_TIMEOUT_MS = 30_000  # HTTP_API_QUOTAS: "Integration timeout 30 s"
LAMBDA_MAX_TIMEOUT_S = 900  # LAMBDA_QUOTAS: "Function timeout 900 seconds (15 minutes)"
# LAMBDA_QUOTAS: reserved concurrency leaves at least 100 unreserved per account (default
# account concurrency 1,000).
LAMBDA_UNRESERVED_MINIMUM = 100
LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY = 1000
