"""S3 as the domain's BlobStore."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from runtime.domain.errors import PermanentError, TransientError
from runtime.domain.ports import StoredObject

_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}
_DELETE_BATCH = 1000  # DeleteObjects limit


class S3BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    def get(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            raise _translate(error, key) from error

    def read(self, key: str) -> tuple[bytes, str]:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read(), response["ETag"].strip('"')
        except ClientError as error:
            raise _translate(error, key) from error

    def etag(self, key: str) -> str | None:
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')
        except ClientError as error:
            translated = _translate(error, key)
            if isinstance(translated, PermanentError):
                return None
            raise translated from error

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except ClientError as error:
            raise _translate(error, key) from error

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = self._s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            if response.get("Errors"):
                raise TransientError(f"could not delete {len(response['Errors'])} objects")

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield StoredObject(
                    key=obj["Key"],
                    size=obj["Size"],
                    etag=obj["ETag"].strip('"'),
                    last_modified=obj["LastModified"],
                )


def _translate(error: ClientError, key: str) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code in {"NoSuchKey", "404", "NotFound"}:
        return PermanentError("object_missing", f"{key} is not in the bucket")
    if code in _TRANSIENT_CODES:
        return TransientError(f"S3 {code} for {key}")
    return error
