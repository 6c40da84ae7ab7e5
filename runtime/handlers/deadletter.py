"""Lambda (SQS event source on every event function's dead-letter queue): fail the items of events
that exhausted their retries. Records are reported one by one (partial batch response), so one
that cannot be handled now (the database unreachable) is delivered again without the others."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.handlers.wiring import METRICS_NAMESPACE, pipeline, report

logger = Logger(service="deadletter")
metrics = Metrics(namespace=METRICS_NAMESPACE, service="deadletter")
processor = BatchProcessor(event_type=EventType.SQS)


def _record(record: SQSRecord) -> dict:
    from runtime.domain.deadletter_stage import DeadLetter, fail_dead_lettered  # the ORM: on use

    letter = DeadLetter.from_message(record.body, record.raw_event.get("messageAttributes") or {})
    logger.warning(
        "dead letter",
        extra={
            "error_type": letter.error_type,
            "attempts": letter.attempts,
            "source": record.event_source_arn,
        },
    )
    return report(fail_dead_lettered(pipeline(), letter), logger, metrics)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )
