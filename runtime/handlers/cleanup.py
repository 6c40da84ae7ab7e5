"""Lambda (scheduled): fail abandoned items, delete unreferenced objects, report as metrics."""

from dataclasses import asdict

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.handlers.wiring import METRICS_NAMESPACE, pipeline

logger = Logger(service="cleanup")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="cleanup")


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    from runtime.domain.cleanup_stage import run_cleanup  # the ORM: on first use

    report = run_cleanup(pipeline())
    for name, value in report.as_metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("cleanup finished", extra=asdict(report))
    return asdict(report)
