"""API: an API Gateway HTTP API in front of the api function.

JWT authorizer with the user pool's issuer and the app client as audience; ``ANY /{proxy+}``
requires it, the topology's public routes (``/health``, ``/version``, ``/openapi.json``,
``/docs``) do not; Lambda proxy integration with payload format 2.0; the ``$default`` stage
auto-deploys, throttles its default route and writes JSON access logs to its own log group.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra.config import ApiConfig
from runtime.topology import Function, Http

PROXY_ROUTE = "ANY /{proxy+}"

ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "sub": "$context.authorizer.claims.sub",
}


def routes(fn: Function) -> dict[str, bool]:
    """Route key -> whether it requires a token."""
    if not isinstance(fn.trigger, Http):
        raise ValueError(f"function {fn.name!r} is not an HTTP function")
    table = {route: False for route in fn.trigger.public_routes}
    table[PROXY_ROUTE] = True
    return table


def cors_configuration(origins: Sequence[str]) -> dict[str, object] | None:
    if not origins:
        return None
    return {
        "allow_origins": list(origins),
        "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        "allow_headers": ["authorization", "content-type"],
        "max_age": 3600,
    }


class Api(pulumi.ComponentResource):
    api: aws.apigatewayv2.Api
    authorizer: aws.apigatewayv2.Authorizer
    stage: aws.apigatewayv2.Stage
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: ApiConfig,
        *,
        stack: str,
        fn: Function,
        function: aws.lambda_.Function,
        issuer: pulumi.Input[str],
        audience: pulumi.Input[str],
        log_retention_days: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:api:Api", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.api = aws.apigatewayv2.Api(
            f"{name}-http",
            protocol_type="HTTP",
            description=f"Collections {stack} HTTP API",
            cors_configuration=cors_configuration(cfg.cors_allowed_origins),
            opts=child,
        )
        self.authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-jwt",
            api_id=self.api.id,
            authorizer_type="JWT",
            identity_sources=["$request.header.Authorization"],
            jwt_configuration={"issuer": issuer, "audiences": [audience]},
            opts=child,
        )
        self.integration = aws.apigatewayv2.Integration(
            f"{name}-lambda",
            api_id=self.api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=function.arn,
            payload_format_version="2.0",
            timeout_milliseconds=30000,
            opts=child,
        )
        target = self.integration.id.apply(lambda i: f"integrations/{i}")
        self.routes: dict[str, aws.apigatewayv2.Route] = {}
        for route_key, authorized in routes(fn).items():
            slug = route_key.replace(" ", "-").strip("/").replace("/", "-").lower()
            slug = "".join(c for c in slug if c.isalnum() or c == "-").strip("-")
            self.routes[route_key] = aws.apigatewayv2.Route(
                f"{name}-route-{slug}",
                api_id=self.api.id,
                route_key=route_key,
                target=target,
                authorization_type="JWT" if authorized else "NONE",
                authorizer_id=self.authorizer.id if authorized else None,
                opts=child,
            )

        self.access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name_prefix=f"/collections/{stack}/api-access-",
            retention_in_days=log_retention_days,
            opts=child,
        )
        self.stage = aws.apigatewayv2.Stage(
            f"{name}-default",
            api_id=self.api.id,
            name="$default",
            auto_deploy=True,
            default_route_settings={
                "throttling_rate_limit": cfg.throttle_rate_limit,
                "throttling_burst_limit": cfg.throttle_burst_limit,
            },
            access_log_settings={
                "destination_arn": self.access_logs.arn,
                "format": json.dumps(ACCESS_LOG_FORMAT),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.routes.values())),
        )
        self.permission = aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="apigateway.amazonaws.com",
            source_arn=self.api.execution_arn.apply(lambda arn: f"{arn}/*/*"),
            opts=child,
        )
        self.url = self.api.api_endpoint
        self.register_outputs({"url": self.url, "apiId": self.api.id})
