"""boto3 clients pointed at AWS, or at the local emulator when an endpoint is configured."""

from functools import cache
from typing import Any

from runtime.config import get_settings


def client_kwargs() -> dict[str, Any]:
    settings = get_settings()
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    return kwargs


@cache
def client(service: str) -> Any:
    """One client per service per process (created on first use, reused across invocations)."""
    import boto3

    return boto3.client(service, **client_kwargs())
