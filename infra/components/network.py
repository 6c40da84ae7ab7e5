"""Network: a VPC (awsx) with public subnets for NAT, private subnets for the functions and
isolated subnets for the database; NAT egress so functions reach the model APIs; free gateway
endpoints for S3 and DynamoDB; and the functions' security group.

The component's contract is its outputs (``vpc_id``, ``private_subnet_ids``,
``isolated_subnet_ids``, ``functions_security_group_id``). With ``networkStack`` set, no VPC is
created: the same slots are filled from that stack's outputs ``vpcId``, ``privateSubnetIds`` and
``isolatedSubnetIds`` (a StackReference; the network project owns NAT and gateway endpoints),
and only the functions' security group is created here, in that VPC.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from infra.config import NetworkConfig
from infra.references import Check, is_vpc_id, reference, require_output, subnet_ids

# Gateway endpoints cost nothing and keep S3/DynamoDB traffic off the NAT gateway.
GATEWAY_ENDPOINT_SERVICES = ("s3", "dynamodb")
# An RDS subnet group needs subnets in at least two availability zones.
MIN_SUBNETS = 2


def subnet_specs() -> list[awsx.ec2.SubnetSpecArgs]:
    return [
        awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, cidr_mask=24),
        awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, cidr_mask=20),
        awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.ISOLATED, cidr_mask=24),
    ]


class Network(pulumi.ComponentResource):
    vpc: awsx.ec2.Vpc | None
    source: pulumi.StackReference | None
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    isolated_subnet_ids: pulumi.Output[list[str]]
    functions_security_group_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: NetworkConfig,
        *,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if cfg.existing_stack:
            self._read(name, cfg.existing_stack)
        else:
            self._create(name, cfg, region=region)

        # The functions' security group: no ingress; egress HTTPS (AWS APIs, model APIs) here,
        # and PostgreSQL to the database's group (added by the database component).
        self.functions_security_group = aws.ec2.SecurityGroup(
            f"{name}-functions-sg",
            description="Collections Lambda functions",
            vpc_id=self.vpc_id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-functions-https-egress",
            security_group_id=self.functions_security_group.id,
            description="HTTPS to AWS APIs and model providers",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )
        self.functions_security_group_id = self.functions_security_group.id

        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateSubnetIds": self.private_subnet_ids,
                "isolatedSubnetIds": self.isolated_subnet_ids,
                "functionsSecurityGroupId": self.functions_security_group_id,
            }
        )

    def _read(self, name: str, stack: str) -> None:
        """The VPC another stack owns: ids from its outputs, nothing created."""
        self.vpc = None
        self.source = reference(f"{name}-source", stack, parent=self)

        def output(key: str, check: Check) -> pulumi.Output[Any]:
            return require_output(
                self.source, key, stack=stack, setting="networkStack", check=check
            )

        self.vpc_id = output("vpcId", is_vpc_id)
        self.private_subnet_ids = output("privateSubnetIds", subnet_ids(MIN_SUBNETS))
        self.isolated_subnet_ids = output("isolatedSubnetIds", subnet_ids(MIN_SUBNETS))

    def _create(self, name: str, cfg: NetworkConfig, *, region: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        self.source = None
        self.vpc = awsx.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.cidr_block,
            number_of_availability_zones=cfg.availability_zones,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=subnet_specs(),
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                strategy=awsx.ec2.NatGatewayStrategy(cfg.nat_gateways)
            ),
            # "Auto" fills each gateway endpoint's route tables from the VPC's own.
            vpc_endpoint_strategy=awsx.ec2.VpcEndpointStrategy.AUTO,
            vpc_endpoint_specs=[
                awsx.ec2.VpcEndpointSpecArgs(
                    service_name=f"com.amazonaws.{region}.{service}",
                    vpc_endpoint_type="Gateway",
                )
                for service in GATEWAY_ENDPOINT_SERVICES
            ],
            opts=child,
        )
        self.vpc_id = self.vpc.vpc_id
        self.private_subnet_ids = self.vpc.private_subnet_ids
        self.isolated_subnet_ids = self.vpc.isolated_subnet_ids
