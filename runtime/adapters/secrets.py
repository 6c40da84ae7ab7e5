"""API keys, read at run time and cached: SSM SecureString on AWS, the environment locally.

The value is never logged and never stored in configuration; the settings carry only the SSM
parameter name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runtime.adapters.aws import client_kwargs

if TYPE_CHECKING:
    # Powertools' parameters package imports boto3: loaded on the first secret read, not at init.
    from aws_lambda_powertools.utilities.parameters import SSMProvider

SECRET_CACHE_SECONDS = 300


def get_secret(param_name: str | None, env_var: str) -> str | None:
    """The secret from SSM parameter ``param_name`` if set, else from ``env_var``, else None."""
    if param_name:
        provider = _ssm_provider()
        return provider.get(param_name, decrypt=True, max_age=SECRET_CACHE_SECONDS)
    value = os.environ.get(env_var, "").strip()
    return value or None


_provider: SSMProvider | None = None


def _ssm_provider() -> SSMProvider:
    global _provider
    if _provider is None:
        import boto3
        from aws_lambda_powertools.utilities import parameters

        _provider = parameters.SSMProvider(boto3_client=boto3.client("ssm", **client_kwargs()))
    return _provider
