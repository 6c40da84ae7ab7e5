"""The Anthropic SDK client, as the analyzer and the assistant create it (SDK imported lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.adapters.secrets import get_secret
from runtime.domain.errors import PermanentError, TransientError

if TYPE_CHECKING:
    import anthropic

    from runtime.config import Settings


def create_client(
    settings: Settings, *, max_retries: int, stage: str | None = None
) -> anthropic.Anthropic:
    """A client with the key read now (SSM SecureString on AWS, ``ANTHROPIC_API_KEY`` locally).

    Raises ``TransientError`` when the key cannot be read (SSM throttled or unreachable) and
    ``PermanentError("model_auth_failed")`` when none is configured.
    """
    import anthropic

    try:
        api_key = get_secret(settings.anthropic_api_key_param, "ANTHROPIC_API_KEY")
    except Exception as exc:
        raise TransientError(f"could not read the Anthropic API key: {type(exc).__name__}") from exc
    if not api_key:
        raise PermanentError("model_auth_failed", "no Anthropic API key is configured", stage=stage)
    kwargs: dict[str, Any] = {
        "api_key": api_key,
        "max_retries": max_retries,
        "timeout": settings.anthropic_timeout_s,
    }
    if settings.anthropic_base_url:
        kwargs["base_url"] = settings.anthropic_base_url
    return anthropic.Anthropic(**kwargs)
