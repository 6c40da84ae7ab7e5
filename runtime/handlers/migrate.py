"""Lambda (invoked by the deployment): apply database migrations up to head."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.db import migrate
from runtime.db.session import get_engine

logger = Logger(service="migrate")


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    engine = get_engine()
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    logger.info("migrations applied", extra={"before": before, "after": after})
    return {"before": before, "after": after}
