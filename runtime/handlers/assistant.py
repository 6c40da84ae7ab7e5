"""Lambda: QuestionAsked -> the assistant's answer, stored on the pending message."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.events import QuestionAsked
from runtime.handlers.wiring import METRICS_NAMESPACE, assistant_services

logger = Logger(service="assistant")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="assistant")


# The EventBridge envelope this function parses (each handler builds only its own model).
class QuestionAskedEvent(EventBridgeModel):
    detail: QuestionAsked


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
def handler(event: dict, context: LambdaContext) -> dict:
    from runtime.domain.assistant import answer_question  # the ORM: on first use

    asked = parse(event=event, model=QuestionAskedEvent).detail
    logger.append_keys(conversation_id=str(asked.conversation_id), message_id=str(asked.message_id))
    outcome = answer_question(assistant_services(), asked)
    logger.info("question handled", extra={"result": outcome.result, "detail": outcome.detail})
    name = "Answers" + outcome.result.title()
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return outcome.as_dict()
