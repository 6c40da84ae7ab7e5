"""Storage: the S3 bucket for originals and derivatives, and the DynamoDB idempotency table.

Bucket: every public-access switch blocked, owner-enforced object ownership, SSE-S3 encryption,
TLS-only bucket policy, versioning from config, S3 -> EventBridge notifications on (the
thumbnailer's trigger), CORS for browser uploads from config, and a lifecycle that aborts
incomplete multipart uploads and expires noncurrent versions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import StorageConfig
from infra.options import options_for

# powertools idempotency: partition key "id", TTL attribute "expiration". Encrypted at rest with
# DynamoDB's default (AWS-owned) key: no KMS charges, no key permissions to grant.
IDEMPOTENCY_KEY = "id"
IDEMPOTENCY_TTL_ATTRIBUTE = "expiration"
# The assistant's conversations (runtime.adapters.conversations): partition = tenant, sort =
# record; DynamoDB deletes each record once its TTL attribute (epoch seconds) has passed.
CONVERSATIONS_PARTITION_KEY = "pk"
CONVERSATIONS_SORT_KEY = "sk"
CONVERSATIONS_TTL_ATTRIBUTE = "expires_at"


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def cors_rules(origins: Sequence[str]) -> list[dict[str, Any]]:
    """Browser uploads (presigned POST/PUT) and downloads from these origins only: the web app's
    own, and any configured ones (never a wildcard)."""
    if not origins:
        return []
    return [
        {
            "allowed_methods": ["GET", "HEAD", "POST", "PUT"],
            "allowed_origins": list(origins),
            "allowed_headers": ["*"],
            "expose_headers": ["ETag"],
            "max_age_seconds": 3600,
        }
    ]


def lifecycle_rules(cfg: StorageConfig) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {
                "days_after_initiation": cfg.abort_incomplete_upload_days
            },
        }
    ]
    if cfg.versioning:
        rules.append(
            {
                "id": "expire-noncurrent-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {
                    "noncurrent_days": cfg.noncurrent_version_expiration_days
                },
            }
        )
    return rules


class Storage(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    idempotency_table: aws.dynamodb.Table
    conversations_table: aws.dynamodb.Table

    def __init__(
        self,
        name: str,
        cfg: StorageConfig,
        *,
        protect: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:storage:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            opts=options_for("bucket", protect=protect, name=f"{name}-bucket", parent=self),
        )
        bucket_id = self.bucket.id
        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn

        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket_id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled" if cfg.versioning else "Suspended"},
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket_id,
            policy=self.bucket_arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        # "Object Created" events go to the account's default EventBridge bus.
        aws.s3.BucketNotification(
            f"{name}-eventbridge",
            bucket=bucket_id,
            eventbridge=True,
            opts=child,
        )
        self._name, self._cfg = name, cfg
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket_id,
            rules=lifecycle_rules(cfg),
            opts=child,
        )

        self.idempotency_table = aws.dynamodb.Table(
            f"{name}-idempotency",
            billing_mode="PAY_PER_REQUEST",
            hash_key=IDEMPOTENCY_KEY,
            attributes=[{"name": IDEMPOTENCY_KEY, "type": "S"}],
            ttl={"attribute_name": IDEMPOTENCY_TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": False},
            deletion_protection_enabled=cfg.deletion_protection,
            opts=options_for(
                "idempotency-table", protect=protect, name=f"{name}-idempotency", parent=self
            ),
        )

        self.conversations_table = aws.dynamodb.Table(
            f"{name}-conversations",
            billing_mode="PAY_PER_REQUEST",
            hash_key=CONVERSATIONS_PARTITION_KEY,
            range_key=CONVERSATIONS_SORT_KEY,
            attributes=[
                {"name": CONVERSATIONS_PARTITION_KEY, "type": "S"},
                {"name": CONVERSATIONS_SORT_KEY, "type": "S"},
            ],
            ttl={"attribute_name": CONVERSATIONS_TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": False},  # short-lived by design
            server_side_encryption={"enabled": False},  # i.e. the AWS-owned key, no KMS grants
            deletion_protection_enabled=cfg.deletion_protection,
            opts=options_for(
                "conversations-table", protect=protect, name=f"{name}-conversations", parent=self
            ),
        )

        self.register_outputs(
            {
                "bucketName": self.bucket_name,
                "bucketArn": self.bucket_arn,
                "idempotencyTableName": self.idempotency_table.name,
                "conversationsTableName": self.conversations_table.name,
            }
        )

    def allow_browsers(self, app_origin: pulumi.Input[str]) -> aws.s3.BucketCorsConfiguration:
        """CORS for the web app's origin (known once the API exists) plus the configured ones:
        the browser posts uploads straight to the bucket with the presigned POST."""
        configured = list(self._cfg.cors_allowed_origins)
        rules = pulumi.Output.from_input(app_origin).apply(
            lambda origin: cors_rules([origin, *(o for o in configured if o != origin)])
        )
        return aws.s3.BucketCorsConfiguration(
            f"{self._name}-cors",
            bucket=self.bucket.id,
            cors_rules=rules,
            opts=pulumi.ResourceOptions(parent=self),
        )
