"""Events exactly as AWS delivers them to a Lambda function, for feeding handlers directly."""

from __future__ import annotations

import uuid
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


def eventbridge_event(
    detail_type: str, detail: dict[str, Any], *, source: str, resources: list[str] | None = None
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2026-11-23T12:00:00Z",
        "region": REGION,
        "resources": resources or [],
        "detail": detail,
    }


def s3_object_created(
    bucket: str, key: str, size: int, etag: str = "b1946ac92492d2347c6235b4d2611184"
) -> dict[str, Any]:
    """The "Object Created" event S3 sends to EventBridge (shape from the S3 user guide)."""
    return eventbridge_event(
        "Object Created",
        {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag,
                "sequencer": "00617F08299329D189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "198.51.100.7",
            "reason": "PostObject",
        },
        source="aws.s3",
        resources=[f"arn:aws:s3:::{bucket}"],
    )
