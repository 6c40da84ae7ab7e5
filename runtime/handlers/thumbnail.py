"""Lambda: S3 "Object Created" (via EventBridge) -> thumbnails and ImageProcessed."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    S3EventNotificationEventBridgeModel as S3ObjectCreatedEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.handlers.wiring import METRICS_NAMESPACE, pipeline, report

logger = Logger(service="thumbnail")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="thumbnail")


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict, context: LambdaContext) -> dict:
    from runtime.domain.thumbnail_stage import process_upload  # the ORM: on first use

    s3_object = parse(event=event, model=S3ObjectCreatedEvent).detail.object
    outcome = process_upload(
        pipeline(), key=s3_object.key, size=s3_object.size, etag=s3_object.etag
    )
    return report(outcome, logger, metrics)
