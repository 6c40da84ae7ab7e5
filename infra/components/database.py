"""Database: RDS PostgreSQL (pgvector >= 0.8) in isolated subnets, encrypted, never public, TLS
forced by its parameter group, the master password generated and rotated by RDS in Secrets
Manager (it never passes through Pulumi config or state), reachable only from the functions'
security group. IAM database authentication is on: the service functions sign in as the
application role (created by the migrations) with IAM tokens; only the migrator uses the master
secret. ``max_connections`` is set explicitly, and the stack configuration is refused when the
functions' reserved concurrency could open more (``infra.config.required_connections``). Major
version upgrades are never applied by an update; storage autoscaling has a ceiling.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.config import DatabaseConfig
from infra.options import options_for

DB_NAME = "collections"
DB_USERNAME = "collections_admin"
DB_PORT = 5432


def parameter_group_parameters(max_connections: int) -> list[dict[str, str]]:
    """Server settings: TLS required for every connection; the connection ceiling the
    functions' budget is checked against (a static parameter: applied at the next reboot)."""
    return [
        {"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"},
        {
            "name": "max_connections",
            "value": str(max_connections),
            "apply_method": "pending-reboot",
        },
    ]


def db_user_arn_prefix(instance_arn: str, resource_id: str) -> str:
    """``arn:<partition>:rds-db:<region>:<account>:dbuser:<DbiResourceId>/``: what
    ``rds-db:connect`` is granted on (the database user's name is appended)."""
    _, partition, _, region, account, *_ = instance_arn.split(":")
    return f"arn:{partition}:rds-db:{region}:{account}:dbuser:{resource_id}/"


def first_secret_arn(secrets: list[object] | None) -> str | None:
    """The ARN of the RDS-managed master secret (typed output object or plain dict)."""
    if not secrets:
        return None
    secret = secrets[0]
    arn = getattr(secret, "secret_arn", None)
    if arn is None and isinstance(secret, dict):
        arn = secret.get("secretArn") or secret.get("secret_arn")
    return arn


class Database(pulumi.ComponentResource):
    instance: aws.rds.Instance
    address: pulumi.Output[str]
    port: pulumi.Output[int]
    master_secret_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: DatabaseConfig,
        *,
        stack: str,
        protect: bool,
        vpc_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
        client_security_group_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:database:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="Collections PostgreSQL: functions only",
            vpc_id=vpc_id,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-functions",
            security_group_id=self.security_group.id,
            referenced_security_group_id=client_security_group_id,
            description="PostgreSQL from the functions",
            ip_protocol="tcp",
            from_port=DB_PORT,
            to_port=DB_PORT,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-functions-egress",
            security_group_id=client_security_group_id,
            referenced_security_group_id=self.security_group.id,
            description="PostgreSQL to the database",
            ip_protocol="tcp",
            from_port=DB_PORT,
            to_port=DB_PORT,
            opts=child,
        )

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            description="Collections database: isolated subnets",
            subnet_ids=subnet_ids,
            opts=child,
        )
        parameter_group = aws.rds.ParameterGroup(
            f"{name}-params",
            family=cfg.parameter_group_family,
            description="Collections PostgreSQL: TLS required",
            parameters=parameter_group_parameters(cfg.max_connections),
            opts=child,
        )

        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=cfg.engine_version,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage_gb,
            max_allocated_storage=cfg.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            iam_database_authentication_enabled=True,
            db_name=DB_NAME,
            username=DB_USERNAME,
            manage_master_user_password=True,
            port=DB_PORT,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=parameter_group.name,
            publicly_accessible=False,
            multi_az=cfg.multi_az,
            backup_retention_period=cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=cfg.deletion_protection,
            skip_final_snapshot=cfg.skip_final_snapshot,
            final_snapshot_identifier=(
                None if cfg.skip_final_snapshot else f"collections-{stack}-final"
            ),
            opts=options_for("database", protect=protect, name=f"{name}-postgres", parent=self),
        )

        self.address = self.instance.address
        self.port = self.instance.port
        self.master_secret_arn = self.instance.master_user_secrets.apply(first_secret_arn)
        # The account the stack deploys to, as the instance's ARN names it (no extra invoke).
        self.account_id = self.instance.arn.apply(lambda arn: arn.split(":")[4])
        self.user_arn_prefix = pulumi.Output.all(
            self.instance.arn, self.instance.resource_id
        ).apply(lambda a: db_user_arn_prefix(a[0], a[1]))
        self.security_group_id = self.security_group.id
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "masterSecretArn": self.master_secret_arn,
            }
        )
