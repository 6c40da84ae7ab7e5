"""Local mode hands API keys to its processes the way AWS does: as SSM SecureString names."""

from __future__ import annotations

import boto3
import pytest

from runtime.adapters import aws
from runtime.adapters.secrets import get_secret
from runtime.config import get_settings
from runtime.local.dev import store_api_keys


def test_keys_become_secure_parameters_and_leave_the_environment(
    emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssm = boto3.client("ssm", endpoint_url=emulator, region_name="us-east-1")
    env = {"ANTHROPIC_API_KEY": "sk-ant-local-secret", "VOYAGE_API_KEY": "", "PATH": "/bin"}
    store_api_keys(ssm, env, stack="keytest")

    assert "ANTHROPIC_API_KEY" not in env and "sk-ant-local-secret" not in env.values()
    assert env["COLLECTIONS_ANTHROPIC_API_KEY_PARAM"] == "/collections/keytest/anthropicApiKey"
    assert "COLLECTIONS_VOYAGE_API_KEY_PARAM" not in env  # no key, no parameter
    stored = ssm.get_parameter(Name="/collections/keytest/anthropicApiKey")["Parameter"]
    assert stored["Type"] == "SecureString"

    # and the runtime reads it back through the same path as on AWS
    monkeypatch.setenv("COLLECTIONS_AWS_ENDPOINT_URL", emulator)
    get_settings.cache_clear()
    aws.client.cache_clear()
    try:
        assert get_secret(env["COLLECTIONS_ANTHROPIC_API_KEY_PARAM"], "UNSET") == (
            "sk-ant-local-secret"
        )
    finally:
        get_settings.cache_clear()
        aws.client.cache_clear()
