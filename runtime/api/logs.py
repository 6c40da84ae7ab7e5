"""The API's structured (JSON) logger: one access line per request, plus warnings and errors."""

from aws_lambda_powertools import Logger

logger = Logger(service="api")
