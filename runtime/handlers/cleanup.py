"""Lambda (scheduled): fail abandoned items, delete unreferenced objects, report as metrics."""

from dataclasses import asdict
from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.config import get_settings
from runtime.handlers.wiring import METRICS_NAMESPACE, conversation_store, pipeline

logger = Logger(service="cleanup")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="cleanup")


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    from runtime.domain.cleanup_stage import run_cleanup  # the ORM: on first use

    report = run_cleanup(pipeline())
    result = asdict(report)
    counts = report.as_metrics()
    settings = get_settings()
    if settings.conversations_sweep_expired and settings.conversations_table:
        # Local mode: the emulator never expires items (DynamoDB's TTL does it on AWS).
        swept = conversation_store().sweep_expired(datetime.now(UTC))
        result["expired_conversation_records"] = counts["ExpiredConversationRecordsDeleted"] = swept
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("cleanup finished", extra=result)
    return result
