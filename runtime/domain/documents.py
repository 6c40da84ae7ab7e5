"""The search document of an item: the text that is embedded and the weighted full-text fields.

Fields, in the order they appear in the embedded text, with their full-text weight (A highest):

| weight | fields |
|---|---|
| A | headline, category, subcategories |
| B | summary, key_interest, themes, location_tags, hashtags |
| C | objects, extracted_text, original_poster, tagged_accounts, likely_source |
| D | emotions, vibes, audio_source, visual_hierarchy |

The embedded text puts the most telling fields first because embedding models truncate long
inputs (the local MiniLM at 256 tokens); extracted text, which can be long, comes late and is
capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEXT_SEARCH_CONFIG = "english"  # PostgreSQL text search configuration (stemming, stop words)
EXTRACTED_TEXT_LIMIT = 2000  # characters of OCR/extracted text kept in a document
FIELD_LIMIT = 4000


@dataclass(frozen=True)
class SearchDocumentText:
    """The weighted parts (for ``setweight(to_tsvector(...))``) and the text to embed."""

    weight_a: str
    weight_b: str
    weight_c: str
    weight_d: str
    embedded_text: str
    category: str | None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value)]


def _join(values: list[str], limit: int = FIELD_LIMIT) -> str:
    return " ".join(values)[:limit]


def build_document(analysis: dict[str, Any]) -> SearchDocumentText:
    meta = analysis.get("media_metadata") or {}
    details = analysis.get("image_details") or {}
    category = (analysis.get("category") or "").strip() or None
    hashtags = [h.lstrip("#") for h in _strings(meta.get("hashtags"))]
    extracted = _join(_strings(details.get("extracted_text")), EXTRACTED_TEXT_LIMIT)

    a = (
        _strings(analysis.get("headline"))
        + _strings(category)
        + _strings(analysis.get("subcategories"))
    )
    b = (
        _strings(analysis.get("summary"))
        + _strings(details.get("key_interest"))
        + _strings(details.get("themes"))
        + _strings(meta.get("location_tags"))
        + hashtags
    )
    c = (
        _strings(details.get("objects"))
        + _strings(extracted)
        + _strings(meta.get("original_poster"))
        + _strings(meta.get("tagged_accounts"))
        + _strings(details.get("likely_source"))
    )
    d = (
        _strings(details.get("emotions"))
        + _strings(details.get("vibes"))
        + _strings(meta.get("audio_source"))
        + _strings(details.get("visual_hierarchy"))
    )

    lines = [
        _join(_strings(analysis.get("headline"))),
        f"Category: {category}" if category else "",
        _labelled("Topics", _strings(analysis.get("subcategories"))),
        _join(_strings(analysis.get("summary"))),
        _labelled("Key interest", _strings(details.get("key_interest"))),
        _labelled("Themes", _strings(details.get("themes"))),
        _labelled("Places", _strings(meta.get("location_tags"))),
        _labelled("Hashtags", hashtags),
        _labelled("Objects", _strings(details.get("objects"))),
        _labelled(
            "Source", _strings(details.get("likely_source")) + _strings(meta.get("original_poster"))
        ),
        f"Text: {extracted}" if extracted else "",
    ]
    return SearchDocumentText(
        weight_a=_join(a),
        weight_b=_join(b),
        weight_c=_join(c, FIELD_LIMIT + EXTRACTED_TEXT_LIMIT),
        weight_d=_join(d),
        embedded_text="\n".join(line for line in lines if line),
        category=category,
    )


def _labelled(label: str, values: list[str]) -> str:
    return f"{label}: {', '.join(values)}" if values else ""
