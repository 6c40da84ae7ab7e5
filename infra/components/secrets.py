"""Secrets: the API keys from Pulumi config secrets into SSM SecureString parameters named
``/collections/<stack>/<configKey>``, and the stack's generated secrets (``GENERATED``: the page
cursors' MAC key) under the same scheme. Functions receive the parameter *names* and read the
values at run time; the values exist only in the (encrypted) config or state and in these
parameters.
"""

from __future__ import annotations

import secrets

import pulumi
import pulumi_aws as aws

from infra.config import SecretsConfig
from infra.options import options_for

# Secrets the program makes itself: a random value at creation, kept afterwards (its changes
# are ignored, so a later `pulumi up` does not rotate it and invalidate every cursor).
GENERATED = ("cursorKey",)
KEPT_AFTER_CREATION = ["value"]


def generated_parameter_options(name: str, parent: pulumi.Resource) -> pulumi.ResourceOptions:
    """Options of a generated secret's parameter: its value is never changed by an update."""
    return options_for(
        "ssm-parameter",
        protect=False,
        name=name,
        parent=parent,
        ignore_changes=KEPT_AFTER_CREATION,
    )


def parameter_name(stack: str, key: str) -> str:
    """The one naming scheme for parameters: ``/collections/<stack>/<name>``."""
    return f"/collections/{stack}/{key}"


class Secrets(pulumi.ComponentResource):
    parameters: dict[str, aws.ssm.Parameter]

    def __init__(
        self,
        name: str,
        cfg: SecretsConfig,
        *,
        stack: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("collections:secrets:Secrets", name, None, opts)
        self.parameters = {}
        for key, secret in cfg.items():
            self.parameters[key] = aws.ssm.Parameter(
                f"{name}-{key}",
                name=parameter_name(stack, key),
                type="SecureString",
                value=pulumi.Output.secret(secret.reveal()),
                description=f"Collections {stack}: {key} (from Pulumi config secret)",
                # A fixed name cannot coexist with its replacement; a type/key change replaces it.
                opts=options_for("ssm-parameter", protect=False, name=f"{name}-{key}", parent=self),
            )
        for key in GENERATED:
            self.parameters[key] = aws.ssm.Parameter(
                f"{name}-{key}",
                name=parameter_name(stack, key),
                type="SecureString",
                value=pulumi.Output.secret(secrets.token_urlsafe(32)),
                description=f"Collections {stack}: {key} (generated at creation)",
                opts=generated_parameter_options(f"{name}-{key}", self),
            )
        self.register_outputs({k: p.name for k, p in self.parameters.items()})

    def name_of(self, key: str) -> pulumi.Output[str]:
        return self.parameters[key].name

    def arn_of(self, key: str) -> pulumi.Output[str]:
        return self.parameters[key].arn
