"""Auth: the Cognito user pool (email sign-in, password policy, optional self sign-up and MFA,
deletion protection from config) and a public app client (no secret) for the CLI, scripts and
the web page: SRP, password and refresh-token flows, token validity from config.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import AuthConfig
from infra.options import options_for

EXPLICIT_AUTH_FLOWS = (
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
)


def issuer_url(pool_endpoint: str) -> str:
    """JWT ``iss`` of the pool's tokens: ``https://cognito-idp.<region>.amazonaws.com/<pool id>``.

    The pool's ``endpoint`` output is that URL without the scheme."""
    return pool_endpoint if pool_endpoint.startswith("https://") else f"https://{pool_endpoint}"


def user_pool_args(cfg: AuthConfig) -> dict[str, Any]:
    args: dict[str, Any] = {
        "username_attributes": ["email"],
        "auto_verified_attributes": ["email"],
        "username_configuration": {"case_sensitive": False},
        "password_policy": {
            "minimum_length": cfg.password_min_length,
            "require_lowercase": True,
            "require_uppercase": True,
            "require_numbers": True,
            "require_symbols": True,
            "temporary_password_validity_days": 7,
        },
        "admin_create_user_config": {"allow_admin_create_user_only": not cfg.self_sign_up},
        "account_recovery_setting": {
            "recovery_mechanisms": [{"name": "verified_email", "priority": 1}]
        },
        "mfa_configuration": cfg.mfa,
        "deletion_protection": "ACTIVE" if cfg.deletion_protection else "INACTIVE",
    }
    if cfg.mfa != "OFF":
        args["software_token_mfa_configuration"] = {"enabled": True}
    return args


class Auth(pulumi.ComponentResource):
    user_pool: aws.cognito.UserPool
    client: aws.cognito.UserPoolClient
    user_pool_id: pulumi.Output[str]
    client_id: pulumi.Output[str]
    issuer: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: AuthConfig,
        *,
        protect: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:auth:Auth", name, None, opts)

        self.user_pool = aws.cognito.UserPool(
            f"{name}-users",
            **user_pool_args(cfg),
            opts=options_for("user-pool", protect=protect, name=f"{name}-users", parent=self),
        )
        self.client = aws.cognito.UserPoolClient(
            f"{name}-client",
            user_pool_id=self.user_pool.id,
            generate_secret=False,
            explicit_auth_flows=list(EXPLICIT_AUTH_FLOWS),
            prevent_user_existence_errors="ENABLED",
            enable_token_revocation=True,
            access_token_validity=cfg.access_token_validity_minutes,
            id_token_validity=cfg.id_token_validity_minutes,
            refresh_token_validity=cfg.refresh_token_validity_days,
            token_validity_units={
                "access_token": "minutes",
                "id_token": "minutes",
                "refresh_token": "days",
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.user_pool_id = self.user_pool.id
        self.client_id = self.client.id
        self.issuer = self.user_pool.endpoint.apply(issuer_url)
        self.register_outputs(
            {"userPoolId": self.user_pool_id, "clientId": self.client_id, "issuer": self.issuer}
        )
