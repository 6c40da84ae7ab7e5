"""Lambda: ItemAnalyzed -> the search document, the item ready, and ItemIndexed."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.events import ItemAnalyzed
from runtime.handlers.wiring import METRICS_NAMESPACE, pipeline, report

logger = Logger(service="embed")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="embed")


# The EventBridge envelope this function parses (each handler builds only its own model).
class ItemAnalyzedEvent(EventBridgeModel):
    detail: ItemAnalyzed


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict, context: LambdaContext) -> dict:
    from runtime.domain.embed_stage import index_item  # the ORM: on first use

    analyzed = parse(event=event, model=ItemAnalyzedEvent).detail
    return report(index_item(pipeline(), analyzed), logger, metrics)
