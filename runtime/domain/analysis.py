"""The structured analysis of one image, as the vision model (or the offline analyzer) writes it.

The shape follows the predecessor's reviewed analyses: a broad ``category``, a few
``subcategories``, a ``headline`` (at most 140 characters), a ``summary``, the social-media
metadata visible in the image and the image details (verbatim text, objects, themes, moods,
likely source, what the saver cared about, what draws the eye first).

Validation is deliberately tolerant where models are sloppy but harmless (``null`` for a list,
a bare string instead of a one-element list, blank list entries, unknown extra keys) and strict
where the rest of the pipeline depends on it (``category`` non-empty, ``headline`` present and at
most 140 characters).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

HEADLINE_MAX_CHARS = 140

# The categories the prompt suggests (the golden set and the reference corpus use these and a
# long tail of others; any non-empty string is accepted).
SUGGESTED_CATEGORIES = (
    "Travel",
    "Food",
    "Career",
    "Technology",
    "Coding",
    "Entertainment",
    "Music",
    "Beauty",
    "Fashion",
    "Fitness",
    "Education",
    "Finance",
    "Shopping",
    "Events",
    "Home",
    "News",
    "Humor",
    "Other",
)

SUGGESTED_SOURCES = (
    "TikTok",
    "Instagram",
    "LinkedIn",
    "X",
    "Facebook",
    "Reddit",
    "YouTube",
    "Pinterest",
    "Google Maps",
    "Google",
    "web",
    "user-created",
    "other",
)


def _as_str_list(value: Any) -> Any:
    """``None`` → ``[]``, a bare string → ``[string]``; drop ``None`` and blank entries."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if item is None:
                continue
            if isinstance(item, str):
                item = item.strip()
                if not item:
                    continue
            out.append(item)
        return out
    return value


StrList = Annotated[list[str], BeforeValidator(_as_str_list)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MediaMetadata(_Section):
    original_poster: str | None = Field(
        default=None,
        description="Account or display name of whoever posted the content; null if none.",
    )
    tagged_accounts: StrList = Field(
        default_factory=list, description="Accounts mentioned or tagged (e.g. '@name')."
    )
    location_tags: StrList = Field(
        default_factory=list,
        description="Places named or tagged: venues, addresses, neighbourhoods, cities, countries.",
    )
    audio_source: str | None = Field(
        default=None, description="Song or sound credited on the post; null if none."
    )
    hashtags: StrList = Field(
        default_factory=list, description="Hashtags visible in the image, with the leading '#'."
    )


class ImageDetails(_Section):
    extracted_text: StrList = Field(
        default_factory=list,
        description="All legible text, verbatim, one entry per line or block, in reading order.",
    )
    objects: StrList = Field(
        default_factory=list, description="Notable visible things: objects, people, UI elements."
    )
    themes: StrList = Field(default_factory=list, description="Topics and themes of the content.")
    emotions: StrList = Field(
        default_factory=list, description="Emotions the content expresses or evokes."
    )
    vibes: StrList = Field(
        default_factory=list, description="Aesthetic or mood words (e.g. 'cozy', 'vibrant')."
    )
    likely_source: str | None = Field(
        default=None,
        description=(
            "Where the image most likely comes from: one of "
            + ", ".join(SUGGESTED_SOURCES)
            + " (user-created = a photo the user took)."
        ),
    )
    key_interest: str | None = Field(
        default=None,
        description="One sentence: the specific information the user most likely saved this for.",
    )
    visual_hierarchy: StrList = Field(
        default_factory=list,
        description="The 3-6 elements that draw the eye, most prominent first.",
    )


class Analysis(BaseModel):
    """One image's analysis. Unknown keys (item ids, review metadata…) are ignored."""

    model_config = ConfigDict(extra="ignore")

    category: str = Field(
        min_length=1,
        description=(
            "One broad Title-Case category, e.g. " + ", ".join(SUGGESTED_CATEGORIES) + "."
        ),
    )
    subcategories: StrList = Field(
        default_factory=list, description="Two to four more specific subcategories."
    )
    # Required, but may be empty in stored data (one reviewed golden record has none); the
    # tool schema asks the model for a non-empty one and the analyzer rejects an empty one.
    headline: str = Field(
        max_length=HEADLINE_MAX_CHARS,
        json_schema_extra={"minLength": 1},
        description=(
            f"A specific, searchable one-line headline, at most {HEADLINE_MAX_CHARS} characters: "
            "names, places, prices rather than generic words."
        ),
    )
    summary: str = Field(
        default="",
        description=(
            "Two to four sentences with the concrete details (names, places, prices, dates, "
            "steps) someone would search for later."
        ),
    )
    media_metadata: MediaMetadata = Field(default_factory=MediaMetadata)
    image_details: ImageDetails = Field(default_factory=ImageDetails)

    @field_validator("category", "headline", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("summary", mode="before")
    @classmethod
    def _summary(cls, value: Any) -> Any:
        if value is None:
            return ""
        return value.strip() if isinstance(value, str) else value

    @field_validator("media_metadata", "image_details", mode="before")
    @classmethod
    def _section(cls, value: Any) -> Any:
        return {} if value is None else value


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            target = _inline_refs(copy.deepcopy(defs[name]), defs)
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return {**target, **_inline_refs(extra, defs)}
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _simplify(node: Any) -> Any:
    """Drop titles and defaults, turn ``anyOf[{type: X}, {type: null}]`` into ``type: [X, null]``
    and require every property of every object (the model is asked to fill them all; the
    pydantic model stays lenient)."""
    if isinstance(node, list):
        return [_simplify(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _simplify(v) for k, v in node.items() if k not in ("title", "default")}
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and all(set(o) == {"type"} for o in any_of):
        node.pop("anyOf")
        node["type"] = [o["type"] for o in any_of]
    if node.get("type") == "object" and isinstance(node.get("properties"), dict):
        node["required"] = list(node["properties"])
        node["additionalProperties"] = False
    return node


def analysis_tool_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Analysis`, self-contained (no ``$ref``), for a tool input."""
    raw = Analysis.model_json_schema()
    schema = _simplify(_inline_refs(raw, raw.get("$defs", {})))
    schema.pop("description", None)
    return schema
