"""Claude vision through the official ``anthropic`` SDK, with structured output via a forced tool.

One client per analyzer instance (the factory keeps one instance per process), created on first
use; the API key is read at run time (SSM SecureString on AWS, ``ANTHROPIC_API_KEY`` locally) and
never logged. Failures are classified for the pipeline:

- throttling, overload, 5xx, timeouts, connection errors: the SDK retries them itself
  (``max_retries``, honouring ``retry-after``/``retry-after-ms``); if they persist →
  ``TransientError`` so that the platform retries the event and finally dead-letters it;
- 401/403 → ``PermanentError("model_auth_failed")``; other 4xx →
  ``PermanentError("model_request_rejected")``;
- an answer without the tool call, or whose input does not validate against
  :class:`~runtime.domain.analysis.Analysis` → asked once more, then
  ``PermanentError("malformed_model_output")``.

Token counts are summed over every call made for the image (a malformed first answer is paid for
too) and kept apart as the API bills them: uncached input, input written to the prompt cache, input
read from it, and output; latency is the wall-clock time of the model call(s), retries included.

The tool schema and the system prompt are identical for every image, so they are marked for
prompt caching (one ``cache_control`` breakpoint at the end of the system prompt covers both: the
cached prefix is tools, then system). Cache reads cost a tenth of the input price; the API caches
a prefix only from the model's minimum length on (1,024 tokens for the Sonnet models).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from runtime.domain.analysis import HEADLINE_MAX_CHARS, Analysis, analysis_tool_schema
from runtime.domain.errors import PermanentError, TransientError
from runtime.providers.anthropic_client import create_client
from runtime.providers.base import AnalysisResult
from runtime.providers.lazy_client import LazyClient

if TYPE_CHECKING:
    import anthropic

    from runtime.config import Settings

log = logging.getLogger(__name__)

STAGE = "analyze"
TOOL_NAME = "record_analysis"
SUPPORTED_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
MAX_MODEL_CALLS = 2  # the first answer plus one retry when it is malformed
USAGE_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)

SYSTEM_PROMPT = f"""\
You analyze images that a person saved to their personal collection (mostly phone screenshots of \
social media posts, maps, articles and apps; sometimes their own photos) so they can find them \
again later by keyword, by meaning, or by asking an assistant.

Record your analysis by calling the {TOOL_NAME} tool exactly once. Guidelines:
- category: one broad Title-Case category (Travel, Food, Career, Technology, Coding, \
Entertainment, Music, Beauty, Fashion, Fitness, Education, Finance, Shopping, Events, Home, \
News, Humor, or another single word when none fits); subcategories: two to four specific ones.
- headline: specific and searchable, at most {HEADLINE_MAX_CHARS} characters; prefer names, \
places, prices and numbers over generic words.
- summary: two to four sentences with the concrete details someone would search for \
(names, places, addresses, prices, dates, steps, recommendations).
- extracted_text: every legible piece of text, verbatim, one entry per line or block, in reading \
order; keep the original language and emoji.
- media_metadata: only what is visible (poster name or handle, tagged accounts, location tags, \
the credited audio, hashtags with '#'); null or empty lists when absent. Never invent accounts.
- image_details.likely_source: TikTok, Instagram, LinkedIn, X, Facebook, Reddit, YouTube, \
Pinterest, Google Maps, Google, web, user-created (a photo the person took) or other.
- key_interest: the one specific piece of information the person most likely saved this for.
- visual_hierarchy: three to six elements, most prominent first.
Describe only what the image shows; do not guess beyond it."""

USER_PROMPT = "Analyze this saved image and record the analysis with the record_analysis tool."


CACHE_CONTROL = {"type": "ephemeral"}


def _system_blocks() -> list[dict[str, Any]]:
    return [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": CACHE_CONTROL}]


def _tool_definition() -> dict[str, Any]:
    return {
        "name": TOOL_NAME,
        "description": "Record the structured analysis of the image.",
        "input_schema": analysis_tool_schema(),
    }


def normalise_media_type(content_type: str) -> str:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    media_type = _MEDIA_TYPE_ALIASES.get(media_type, media_type)
    if media_type not in SUPPORTED_MEDIA_TYPES:
        raise PermanentError(
            "unsupported_media_type",
            f"{content_type!r} is not one of {sorted(SUPPORTED_MEDIA_TYPES)}",
            stage=STAGE,
        )
    return media_type


class AnthropicAnalyzer:
    """:class:`~runtime.providers.base.Analyzer` backed by the Anthropic Messages API."""

    provider = "anthropic"

    def __init__(
        self,
        settings: Settings,
        *,
        max_retries: int = 2,
        client: anthropic.Anthropic | None = None,
    ) -> None:
        self.model = settings.anthropic_model
        self._settings = settings
        self._max_retries = max_retries
        self._client = LazyClient(self._create_client, client)
        self._tool = _tool_definition()

    def _create_client(self) -> anthropic.Anthropic:
        return create_client(self._settings, max_retries=self._max_retries, stage=STAGE)

    # -- analysis -------------------------------------------------------------------------------

    def analyze(self, image: bytes, content_type: str) -> AnalysisResult:
        if not image:
            raise PermanentError("empty_image", "no image bytes to analyze", stage=STAGE)
        media_type = normalise_media_type(content_type)
        data = base64.standard_b64encode(image).decode("ascii")
        client = self._client.get()
        started = time.monotonic()  # model time only, not the first call's SDK import

        tokens = dict.fromkeys(USAGE_FIELDS, 0)
        problem = ""
        for attempt in range(1, MAX_MODEL_CALLS + 1):
            message = self._call(client, media_type, data)
            usage = getattr(message, "usage", None)
            for name in USAGE_FIELDS:
                tokens[name] += int(getattr(usage, name, 0) or 0)
            analysis, problem = _parse(message)
            if analysis is not None:
                return AnalysisResult(
                    analysis=analysis,
                    provider=self.provider,
                    model=getattr(message, "model", None) or self.model,
                    latency_ms=int((time.monotonic() - started) * 1000),
                    **tokens,
                )
            log.warning(
                "malformed model output (attempt %d of %d): %s", attempt, MAX_MODEL_CALLS, problem
            )
        raise PermanentError("malformed_model_output", problem, stage=STAGE)

    def _call(self, client: anthropic.Anthropic, media_type: str, data: str) -> Any:
        import anthropic

        try:
            return client.messages.create(
                model=self.model,
                max_tokens=self._settings.anthropic_max_tokens,
                system=_system_blocks(),
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": media_type,
                                    "data": data,
                                },
                            },
                            {"type": "text", "text": USER_PROMPT},
                        ],
                    }
                ],
                tools=[self._tool],
                tool_choice={"type": "tool", "name": TOOL_NAME},
            )
        except anthropic.APIConnectionError as exc:  # includes APITimeoutError
            raise TransientError(f"Anthropic API unreachable: {type(exc).__name__}") from exc
        except anthropic.APIStatusError as exc:
            error = _classify_status_error(exc)
            if isinstance(error, PermanentError) and error.reason == "model_auth_failed":
                self._client.drop()  # a rotated key is read again
            raise error from exc
        except anthropic.AnthropicError as exc:  # e.g. an unparseable response body
            raise TransientError(f"Anthropic API error: {type(exc).__name__}") from exc


def _classify_status_error(exc: Any) -> Exception:
    status = int(getattr(exc, "status_code", 0) or 0)
    message = getattr(exc, "api_message", None) or getattr(exc, "message", "") or ""
    error_type = getattr(exc, "type", None) or ""
    detail = f"HTTP {status} {error_type}: {message}".strip()[:500]
    if status in (408, 409, 429) or status >= 500:
        return TransientError(f"Anthropic API still failing after retries: {detail}")
    if status in (401, 403):
        return PermanentError("model_auth_failed", detail, stage=STAGE)
    return PermanentError("model_request_rejected", detail, stage=STAGE)


def _parse(message: Any) -> tuple[Analysis | None, str]:
    """The validated analysis from a Messages API answer, or ``(None, what was wrong)``."""
    blocks = list(getattr(message, "content", None) or [])
    tool_input = None
    for block in blocks:
        if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == TOOL_NAME:
            tool_input = getattr(block, "input", None)
            break
    if tool_input is None:
        kinds = [getattr(b, "type", "?") for b in blocks]
        stop = getattr(message, "stop_reason", None)
        return None, f"no {TOOL_NAME} tool_use block (content {kinds}, stop_reason {stop})"
    if not isinstance(tool_input, dict):
        return None, f"tool input is {type(tool_input).__name__}, not an object"
    try:
        analysis = Analysis.model_validate(tool_input)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return None, f"tool input does not validate ({exc.error_count()} errors): {errors}"
    if not analysis.headline:
        return None, "headline is empty"
    return analysis, ""
