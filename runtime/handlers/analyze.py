"""Lambda: ImageProcessed / AnalysisRequested -> a stored analysis and ItemAnalyzed."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.adapters.idempotency import IdempotentCalls
from runtime.events import AnalysisRequested, ImageProcessed
from runtime.handlers.wiring import METRICS_NAMESPACE, pipeline, report

logger = Logger(service="analyze")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="analyze")


# The EventBridge envelope this function parses (each handler builds only its own model).
class AnalyzeTriggerEvent(EventBridgeModel):
    detail: ImageProcessed | AnalysisRequested


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict, context: LambdaContext) -> dict:
    from runtime.domain.analyze_stage import analyze_item  # the ORM: on first use

    request = parse(event=event, model=AnalyzeTriggerEvent).detail
    services = pipeline()
    if isinstance(services.model_calls, IdempotentCalls):
        services.model_calls.register_context(context)
    return report(analyze_item(services, request), logger, metrics)
