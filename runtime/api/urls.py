"""Presigned S3 URLs: a POST restricted to one item's original, and short-lived GETs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

UPLOAD_EXPIRES_SECONDS = 15 * 60
DOWNLOAD_EXPIRES_SECONDS = 5 * 60


def presigned_upload(
    s3: Any, *, bucket: str, key: str, content_type: str, max_bytes: int
) -> dict[str, Any]:
    """A presigned POST that S3 honours only for this key, this Content-Type and a size in
    [1, max_bytes], until it expires (boto3 adds the bucket and exact-key conditions)."""
    post = s3.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[
            {"Content-Type": content_type},
            ["content-length-range", 1, max_bytes],
        ],
        ExpiresIn=UPLOAD_EXPIRES_SECONDS,
    )
    return {
        "url": post["url"],
        "fields": {name: str(value) for name, value in post["fields"].items()},
        "expires_at": datetime.now(UTC) + timedelta(seconds=UPLOAD_EXPIRES_SECONDS),
    }


def presigned_get(s3: Any, *, bucket: str, key: str, attachment: str | None = None) -> str:
    """A short-lived GET; with ``attachment`` S3 answers with ``Content-Disposition:
    attachment`` under that file name, so a browser saves it instead of showing it."""
    params = {"Bucket": bucket, "Key": key}
    if attachment is not None:
        params["ResponseContentDisposition"] = content_disposition(attachment)
    return s3.generate_presigned_url(
        "get_object", Params=params, ExpiresIn=DOWNLOAD_EXPIRES_SECONDS
    )


def content_disposition(file_name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 5987 form."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def download_expiry() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=DOWNLOAD_EXPIRES_SECONDS)
