"""The offline analyzer: OCR plus heuristics, labelled provider ``local``.

It reads the text in the image with RapidOCR (PP-OCR ONNX models shipped inside the ``rapidocr``
wheel, run by onnxruntime; the model paths are given explicitly so the library never tries to
download anything) and fills the same :class:`~runtime.domain.analysis.Analysis` schema from
that text and a few image properties:

- ``extracted_text``: the recognised lines in reading order (phone status bar dropped);
- ``headline``: the most prominent text (tallest lines, weighted towards the top; a title
  broken over several lines is joined), at most 140 characters;
- ``summary``: what kind of screenshot it is plus its first lines of text;
- hashtags (``#word``), tagged accounts (``@handle``), credited audio (``♫ …``), addresses and
  pinned places, prices;
- ``category`` / ``subcategories`` / ``themes`` / ``objects`` from small keyword tables;
- ``likely_source`` from interface words (TikTok, Instagram, LinkedIn, Maps, X, Reddit,
  YouTube);
- ``vibes``: brightness, colourfulness, dominant colours and orientation.

It is a heuristic, not a vision model: it sees text, not pictures, and says so in its summary.
An image without legible text yields a valid analysis with category ``uncategorized``.
"""

from __future__ import annotations

import colorsys
import io
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.domain.analysis import HEADLINE_MAX_CHARS, Analysis, ImageDetails, MediaMetadata
from runtime.domain.errors import PermanentError
from runtime.providers.base import AnalysisResult

log = logging.getLogger(__name__)

STAGE = "analyze"
MODEL_NAME = "local-ocr-1"
UNCATEGORIZED = "uncategorized"
MAX_EDGE = 1568
# What the analyzer decodes at most (the derivative it is given is <= 1568 x 1568).
MAX_DECODE_PIXELS = 4 * MAX_EDGE * MAX_EDGE
# The OCR input's long edge is at most this many times its short edge (padded with white).
OCR_MAX_ASPECT = 4
MIN_TEXT_SCORE = 0.6
SUMMARY_MAX_CHARS = 500

# -- OCR engine -------------------------------------------------------------------------------

_DET_MODEL = "PP-OCRv6_det_small.onnx"
_CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
_REC_MODEL = "PP-OCRv6_rec_small.onnx"

# One onnxruntime thread: on a busy 2-vCPU machine a 1568 px screenshot took 1.1 s with one
# thread and 1.8 s with the default (one per core), whose threads spin waiting for each other.
OCR_THREADS = 1

_engine: Any = None
_engine_lock = threading.Lock()
_ocr_lock = threading.Lock()


def _create_engine() -> Any:
    import rapidocr
    from rapidocr import RapidOCR

    models = Path(rapidocr.__file__).resolve().parent / "models"
    paths = {
        key: models / name
        for key, name in (("Det", _DET_MODEL), ("Cls", _CLS_MODEL), ("Rec", _REC_MODEL))
    }
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:  # never let RapidOCR fall back to downloading models
        raise RuntimeError(f"RapidOCR models missing from the wheel: {missing}")
    params: dict[str, Any] = {
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": OCR_THREADS,
    }
    for key, path in paths.items():
        params[f"{key}.model_path"] = str(path)
    return RapidOCR(params=params)


def ocr_engine() -> Any:
    """The process-wide RapidOCR engine, created on first use (~1 s)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = _create_engine()
    return _engine


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float
    left: float
    top: float
    right: float
    bottom: float

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def center_y(self) -> float:
        return (self.top + self.bottom) / 2


def run_ocr(image: Any) -> list[TextLine]:
    """Recognised lines of a PIL RGB image, in reading order."""
    engine = ocr_engine()
    with _ocr_lock:  # one inference at a time per process; the engine's state is shared
        result = engine(image)
    boxes, txts, scores = (getattr(result, n, None) for n in ("boxes", "txts", "scores"))
    if boxes is None or txts is None or scores is None:
        return []
    lines = []
    for box, text, score in zip(boxes, txts, scores, strict=False):
        text = " ".join(str(text).split())
        if not text or float(score) < MIN_TEXT_SCORE:
            continue
        xs = [float(p[0]) for p in box]
        ys = [float(p[1]) for p in box]
        lines.append(TextLine(text, float(score), min(xs), min(ys), max(xs), max(ys)))
    return _reading_order(lines)


def _reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Top to bottom; lines that overlap vertically by more than half are one row, left first."""
    ordered = sorted(lines, key=lambda line: line.top)
    rows: list[list[TextLine]] = []
    for line in ordered:
        if rows:
            last = rows[-1][0]
            overlap = min(last.bottom, line.bottom) - max(last.top, line.top)
            if overlap > 0.5 * min(last.height, line.height):
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.left)]


# -- keyword tables ---------------------------------------------------------------------------


def _split(keywords: str) -> list[str]:
    return keywords.split("|")


# Keyword lists are '|'-separated strings, matched case-insensitively on word boundaries
# (multi-word keywords allowed).

# category -> subcategory -> keywords
CATEGORY_KEYWORDS: dict[str, dict[str, str]] = {
    "Travel": {
        "itinerary": (
            "itinerary|day 1|day 2|day 3|days in|day trip|trip|travel|traveltok|vacation|guide|"
            "things to do"
        ),
        "accommodations": "hotel|hostel|ryokan|airbnb|resort|check-in|stay|booking|suite",
        "attractions": (
            "museum|temple|shrine|castle|tower|park|garden|observation deck|landmark|gallery|"
            "exhibition"
        ),
        "nature": (
            "mountain|lake|beach|island|hiking|hike|waterfall|forest|sunset|view|viewpoint|scenic|"
            "national park"
        ),
        "transportation": "train|station|flight|airport|airline|shinkansen|subway|bus|jr pass|exit",
        "onsen": "onsen|hot spring|ryokan",
        "hidden gems": "hidden gem|hidden gems|secret|underrated|must-see|must visit|must-visit",
        "budget": "budget|cheap|free entry|admission|ticket|tickets",
    },
    "Food": {
        "restaurants": (
            "restaurant|menu|reservation|michelin|izakaya|yatai|dinner|lunch|eat|ate|food|foodie|"
            "tasting"
        ),
        "cafes": "cafe|café|coffee|latte|matcha|bakery|brunch|dessert|pastry|cake",
        "recipes": "recipe|ingredients|tbsp|tsp|cup|bake|oven|preheat|cook|cooking|meal prep",
        "regional cuisine": (
            "ramen|sushi|udon|soba|tempura|yakitori|wagyu|kimchi|bbq|taco|pizza|pasta|noodles|"
            "dumplings|curry"
        ),
    },
    "Career": {
        "job search": (
            "job|jobs|hiring|resume|résumé|cv|recruiter|job search|apply|application|offer|salary"
        ),
        "interview preparation": "interview|interviews|behavioral|star method|questions to ask",
        "professional development": (
            "career|careertok|leadership|manager|promotion|linkedin|networking|skills|mentor|"
            "productivity"
        ),
    },
    "Coding": {
        "programming": (
            "python|javascript|typescript|rust|golang|java|code|coding|programming|function|repo|"
            "github|git|api|sdk|npm|pip install|developer|devs"
        ),
        "developer tools": (
            "vscode|vs code|terminal|cli|ide|docker|kubernetes|open source|framework|library"
        ),
    },
    "Technology": {
        "ai tools": (
            "ai|chatgpt|claude|gpt|llm|openai|anthropic|gemini|machine learning|prompt|agent|"
            "agents|model"
        ),
        "apps": "app|apps|iphone|android|ios|software|startup|saas|tech|gadget|smart home",
    },
    "Entertainment": {
        "movies": "movie|movies|film|cinema|oscar|netflix|trailer|director|actor|box office",
        "tv shows": "series|episode|season|drama|kdrama|anime|show|streaming|hbo|disney+",
        "books": "book|books|novel|reading|booktok|author",
    },
    "Music": {
        "songs": "song|songs|album|playlist|spotify|lyrics|single|rapper|singer|band",
        "live music": "concert|tour|festival|live music|setlist|tickets",
    },
    "Beauty": {
        "skincare": "skincare|serum|moisturizer|sunscreen|spf|retinol|cleanser|skin",
        "makeup": "makeup|lipstick|foundation|mascara|blush|concealer",
        "hair": "hair|salon|scalp|haircut|head spa",
        "spa services": "spa|massage|facial|manicure|pedicure|nails",
        "fragrance": "perfume|fragrance|scent|cologne",
    },
    "Fashion": {
        "outfits": "outfit|outfits|ootd|style|wear|dress|jacket|shoes|sneakers|streetwear",
        "luxury": "luxury|designer|watch|watches|handbag|rolex|chanel|gucci|hermes",
    },
    "Fitness": {
        "workouts": (
            "workout|gym|exercise|reps|sets|squat|training|cardio|pilates|yoga|run|running|marathon"
        ),
        "nutrition": "protein|calories|macros|diet",
    },
    "Finance": {
        "personal finance": (
            "budget|savings|invest|investing|stocks|credit card|credit score|debt|401k|roth|ira|"
            "bank|money"
        ),
        "scams": "scam|fraud|phishing|gift card",
    },
    "Shopping": {
        "deals": "sale|discount|promo code|code|deal|deals|% off|coupon",
        "products": "buy|shop|order|cart|amazon|costco|product",
    },
    "Education": {
        "learning resources": (
            "course|courses|learn|learning|tutorial|lesson|study|university|class|free course"
        ),
    },
    "Events": {
        "holiday events": (
            "christmas|holiday lights|holiday market|christmas market|new year|halloween|"
            "fireworks|lights display"
        ),
        "local events": "event|events|festival|parade|fair|performance|chorus|choir|exhibit",
    },
    "Home": {
        "home goods": "bedding|furniture|decor|kitchen|ikea|sofa|cleaning|organize|organizing",
    },
}

# Words too ambiguous to decide a category on their own get half weight.
_WEAK = frozenset(
    _split(
        "agent|agents|ai|app|apps|ate|budget|bus|buy|class|cli|code|cook|cup|eat|exit|framework|"
        "git|hair|ide|library|model|money|order|prompt|run|season|series|sets|shop|show|single|"
        "skin|stay|style|tickets|trip|view|watch|wear"
    )
)

THEMES = {
    "Travel": "travel",
    "Food": "food",
    "Career": "career growth",
    "Coding": "software development",
    "Technology": "technology",
    "Entertainment": "entertainment",
    "Music": "music",
    "Beauty": "self-care",
    "Fashion": "style",
    "Fitness": "health and fitness",
    "Finance": "personal finance",
    "Shopping": "shopping",
    "Education": "learning",
    "Events": "events",
    "Home": "home",
}

EMOTION_WORDS = {
    "excitement": "amazing|best|omg|wow|must|love|obsessed|insane|incredible|!!",
    "curiosity": "how|why|what|secret|hidden|did you know|tips|?",
    "joy": "happy|fun|cute|beautiful|pretty|favorite|favourite|fav",
    "calm": "relaxing|peaceful|cozy|quiet|calm|chill",
    "concern": "scam|warning|avoid|careful|don't|never|mistake",
    "motivation": "goal|goals|success|tips|grow|improve|level up",
}

SOURCE_CUES: dict[str, str] = {
    "TikTok": (
        "tiktok|for you|following|friends|inbox|original sound|capcut|"
        "people posted about this place|recent posts featured|see more posts|add comment|explore|"
        "shop|profile|discover|playlist"
    ),
    "Instagram": (
        "instagram|liked by|reels|suggested for you|view all comments|add a comment|follow|ig:"
    ),
    "LinkedIn": (
        "linkedin|repost|connections|promoted|followers|1st|2nd|3rd+|like comment|send|open to work"
    ),
    "Google Maps": (
        "directions|reviews|overview|nearby|open now|closes|opens|google maps|start|call|website|"
        "write a review"
    ),
    "X": "retweet|retweets|quote|post your reply|for you following|reposts|bookmarks|views",
    "Reddit": "reddit|r/|upvote|subreddit|join|award",
    "YouTube": "youtube|subscribe|subscribers|shorts|views",
}

UI_WORDS = frozenset(
    _split(
        "share|save|follow|following|like|likes|comment|comments|reply|more|less|more >|see more|"
        "for you|explore|shop|home|inbox|profile|discover|friends|send|repost|favorite|directions|"
        "call|website|overview|reviews|photos|menu|search|live|message"
    )
)

OBJECT_KEYWORDS = {
    "price label": r"(?:[$€£¥₩]\s?\d|\d\s?(?:jpy|usd|eur|cad|krw|yen|won)\b)",
    "map": r"\b(?:map|directions|km|miles|exit \d)\b",
    "food": r"\b(?:ramen|sushi|pizza|burger|cake|dessert|coffee|noodles|bowl|dish)\b",
    "train": r"\b(?:train|shinkansen|station|railway)\b",
    "building": r"\b(?:tower|temple|shrine|castle|museum|hotel|building)\b",
    "code snippet": r"(?:\bdef |\bimport |\bfunction\b|=>|\bconst |\{\s*$|</?\w+>)",
    "star rating": r"(?:★|☆|\b\d\.\d\s*(?:stars?|★))",
    "address": r"\b\d{1,5}\s+\w+(?:\s\w+)*\s(?:st|street|ave|avenue|rd|road|blvd|dr|drive|"
    r"ln|lane|way)\b",
}

HASHTAG_RE = re.compile(r"#\w+")
HANDLE_RE = re.compile(r"(?<![\w@])@[\w](?:[\w.]*\w)?")
PRICE_RE = re.compile(OBJECT_KEYWORDS["price label"], re.IGNORECASE)
ADDRESS_RE = re.compile(
    r"\b\d{1,5}\s+[A-Za-z0-9 .'-]+?\b(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Dr|Drive|"
    r"Ln|Lane|Way|Pl|Place|Ct|Court)\b[^|]*",
    re.IGNORECASE,
)
CITY_STATE_RE = re.compile(r"\b[A-Z][a-zA-Z .]+,\s*[A-Z]{2}\s+\d{5}\b")
STATUS_BAR_RE = re.compile(
    r"^(?:\d{1,2}:\d{2}|[\d%]+|5g|lte|4g|wi-?fi|\W+)(?:\s+\S{1,4})*$", re.IGNORECASE
)
AUDIO_RE = re.compile(
    r"^[♫♪♬🎵🎶]\s*(.+)$|^(original sound\b.*)$|^(?:contains:)\s*(.+)$", re.IGNORECASE
)
PIN_RE = re.compile(r"^📍\s*(.+)$")

# Place names worth tagging when they appear in the text (a small gazetteer, not exhaustive).
PLACES = _split(
    "Tokyo|Kyoto|Osaka|Fukuoka|Hokkaido|Sapporo|Nara|Hiroshima|Okinawa|Kyushu|Yokohama|Kamakura|"
    "Nagoya|Hakone|Nikko|Kanazawa|Japan|Seoul|Busan|Jeju|Korea|South Korea|Taipei|Taiwan|Hong Kong|"
    "Singapore|Bangkok|Thailand|Bali|Vietnam|Hanoi|Shanghai|Beijing|China|Paris|France|London|Rome|"
    "Italy|Barcelona|Madrid|Spain|Lisbon|Portugal|Amsterdam|Berlin|Iceland|New York|NYC|"
    "Los Angeles|San Francisco|Chicago|Seattle|Denver|Colorado|Hawaii|Mexico|Mexico City|Canada|"
    "Toronto|Vancouver|Sydney|Melbourne|Australia|Dubai|Istanbul|Greece"
)
_PLACE_RES = [(p, re.compile(rf"\b{re.escape(p)}\b", re.IGNORECASE)) for p in PLACES]


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    left = r"\b" if keyword[:1].isalnum() else ""
    right = r"\b" if keyword[-1:].isalnum() else ""
    return re.compile(left + re.escape(keyword) + right, re.IGNORECASE)


_CATEGORY_RES = {
    category: {
        sub: [(kw, _keyword_pattern(kw)) for kw in _split(keywords)]
        for sub, keywords in subs.items()
    }
    for category, subs in CATEGORY_KEYWORDS.items()
}
_SOURCE_RES = {
    source: [_keyword_pattern(cue) for cue in _split(cues)] for source, cues in SOURCE_CUES.items()
}
_EMOTION_RES = {
    emotion: [_keyword_pattern(w) for w in _split(words)]
    for emotion, words in EMOTION_WORDS.items()
}
_OBJECT_RES = {
    name: re.compile(rx, re.IGNORECASE | re.MULTILINE) for name, rx in OBJECT_KEYWORDS.items()
}


# -- heuristics -------------------------------------------------------------------------------


def classify(text: str) -> tuple[str, list[str], dict[str, float]]:
    """(category, subcategories, per-category scores) from keyword hits in ``text``."""
    scores: dict[str, float] = {}
    sub_hits: dict[str, Counter[str]] = {}
    for category, subs in _CATEGORY_RES.items():
        hits: Counter[str] = Counter()
        for sub, patterns in subs.items():
            for keyword, pattern in patterns:
                n = len(pattern.findall(text))
                if n:
                    hits[sub] += min(n, 3) * (0.5 if keyword in _WEAK else 1.0)
        if hits:
            scores[category] = sum(hits.values())
            sub_hits[category] = hits
    # A screenshot naming places (a city, a country) is most likely about going there.
    places = sum(1 for _, rx in _PLACE_RES if rx.search(text))
    if places:
        scores["Travel"] = scores.get("Travel", 0.0) + min(places, 2)
        sub_hits.setdefault("Travel", Counter())
    if not scores or max(scores.values()) < 1.0:
        return UNCATEGORIZED, [], scores
    # Ties go to the category listed first in the table.
    order = {c: n for n, c in enumerate(CATEGORY_KEYWORDS)}
    category = max(scores, key=lambda c: (scores[c], -order[c]))
    subcategories = [sub for sub, _ in sub_hits[category].most_common(3)]
    return category, subcategories, scores


def likely_source(text: str) -> str:
    """The app whose interface words appear (two cues, or one that names the app), else
    ``other``: without them a screenshot and a photo look the same to OCR."""
    best, best_score = "other", 0
    for source, patterns in _SOURCE_RES.items():
        score = sum(1 for p in patterns if p.search(text))
        if score > best_score:
            best, best_score = source, score
    if best_score >= 2 or (best_score == 1 and best.lower() in text.lower()):
        return best
    return "other"


def _is_ui(text: str) -> bool:
    t = text.strip().lower()
    return t in UI_WORDS or bool(re.fullmatch(r"[\d.,]+[km]?", t)) or _is_chrome(t)


# An app's navigation bar read as one line: "Explore Following Shop For You", often with the
# spaces lost ("ExploreFollowing ForYou") and an icon read as a short token ("TEM", "Q").
CHROME_WORDS = frozenset(
    _split(
        "explore|following|followers|friends|shop|for|you|inbox|profile|live|search|videos|"
        "video|short|shorts|home|discover|reels|photos|posts|tagged|nearby|stem|stories"
    )
)
_LONGEST_CHROME = max(map(len, CHROME_WORDS))


def _chrome_words(token: str) -> int | None:
    """How many navigation words ``token`` (lowercase letters) is made of, or None if it is not
    made of them only."""
    best: list[int | None] = [0] + [None] * len(token)
    for end in range(1, len(token) + 1):
        for start in range(max(0, end - _LONGEST_CHROME), end):
            before = best[start]
            if before is not None and token[start:end] in CHROME_WORDS:
                count = before + 1
                if best[end] is None or count > (best[end] or 0):
                    best[end] = count
    return best[len(token)]


def _is_chrome(text: str) -> bool:
    """A line of interface navigation: two or more navigation words and nothing else but
    tokens of at most three letters (icons read as text)."""
    words = 0
    for token in re.findall(r"[a-z]+", text.lower()):
        count = _chrome_words(token)
        if count is None:
            if len(token) > 3:
                return False
        else:
            words += count
    return words >= 2


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def pick_headline(lines: list[TextLine], image_height: float) -> str:
    """The most prominent text: tall lines near the top win; a title broken over lines is
    joined."""
    candidates = [
        (i, line)
        for i, line in enumerate(lines)
        if _letters(line.text) >= 3
        and not _is_ui(line.text)
        and not line.text.startswith(("#", "@"))
        and not HASHTAG_RE.fullmatch(line.text)
    ]
    if not candidates:
        return ""

    def prominence(item: tuple[int, TextLine]) -> float:
        _, line = item
        position = line.center_y / image_height if image_height else 0.5
        score = line.height * (1.0 - 0.4 * position) * min(1.0, _letters(line.text) / 6)
        return score * _title_likeness(line.text)

    index, best = max(candidates, key=prominence)
    parts = [best.text]
    previous = best
    for line in lines[index + 1 :]:
        similar = abs(line.height - best.height) <= 0.2 * best.height
        close = line.top - previous.bottom <= 0.8 * best.height
        if not (similar and close) or len(" ".join([*parts, line.text])) > HEADLINE_MAX_CHARS:
            break
        parts.append(line.text)
        previous = line
    return _trim(" ".join(parts), HEADLINE_MAX_CHARS)


_FUNCTION_WORDS = frozenset(
    _split(
        "a|an|the|and|but|or|so|to|of|in|on|at|it|its|it's|is|was|were|are|be|i|i've|i'm|my|me|"
        "you|your|we|our|they|this|that|with|for|from|as|if|just|there|here|each|what|how|its"
    )
)


def _title_likeness(text: str) -> float:
    """1.0 for a line that reads like a title; less for a caption fragment (starting in
    lower case mid-sentence, or mostly function words: "BUT IT WAS", "to admire its")."""
    factor = 1.0
    first = next((ch for ch in text if ch.isalpha()), "")
    if first.islower():
        factor *= 0.6
    words = re.findall(r"[\w']+", text.lower())
    if words and sum(w in _FUNCTION_WORDS for w in words) / len(words) >= 0.5:
        factor *= 0.6
    return factor


def _trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def _dedupe(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        key = item.lower()
        if item and key not in seen:
            seen.add(key)
            out.append(item)
    return out


_COLOUR_NAMES = (
    (15, "red"),
    (45, "orange"),
    (70, "yellow"),
    (160, "green"),
    (200, "teal"),
    (255, "blue"),
    (290, "purple"),
    (335, "pink"),
    (360, "red"),
)


def image_vibes(image: Any) -> list[str]:
    """Brightness, colourfulness, dominant hues and orientation of a PIL RGB image."""
    import numpy as np

    small = image.copy()
    small.thumbnail((64, 64))
    rgb = np.asarray(small, dtype=np.float32).reshape(-1, 3) / 255.0
    vibes = []
    lum = float((rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean()) * 255
    vibes.append("bright" if lum > 170 else "dark" if lum < 85 else "balanced light")
    hues: Counter[str] = Counter()
    saturated = 0
    for r, g, b in rgb.tolist():
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        if s > 0.35 and v > 0.25:
            saturated += 1
            degrees = h * 360
            hues[next(name for limit, name in _COLOUR_NAMES if degrees <= limit)] += 1
    share = saturated / len(rgb)
    vibes.append("colorful" if share > 0.35 else "muted" if share > 0.08 else "monochrome")
    vibes += [name for name, n in hues.most_common(2) if n / len(rgb) > 0.05]
    width, height = image.size
    ratio = width / height if height else 1.0
    vibes.append("portrait" if ratio < 0.9 else "landscape" if ratio > 1.1 else "square")
    return _dedupe(vibes)


# -- the analyzer -----------------------------------------------------------------------------


class LocalAnalyzer:
    """:class:`~runtime.providers.base.Analyzer` that needs no network and no API key."""

    provider = "local"
    model = MODEL_NAME

    def analyze(self, image: bytes, content_type: str) -> AnalysisResult:
        picture = _decode(image)
        ocr_engine()  # load outside the measured time (first call only)
        started = time.monotonic()
        analysis = build_analysis(read_lines(picture), picture)
        return AnalysisResult(
            analysis=analysis,
            provider=self.provider,
            model=self.model,
            input_tokens=0,
            output_tokens=0,
            latency_ms=int((time.monotonic() - started) * 1000),
        )


def read_lines(picture: Any) -> list[TextLine]:
    """The picture's text lines in reading order, without the phone's status bar."""
    try:
        lines = run_ocr(picture)
    except Exception:  # an OCR failure must not lose the item: analyse without text
        log.exception("local OCR failed; continuing without text")
        lines = []
    height = picture.size[1]
    return [
        ln for ln in lines if not (ln.center_y < 0.045 * height and STATUS_BAR_RE.match(ln.text))
    ]


def decode(data: bytes) -> Any:
    """The analysis image as a PIL RGB picture (long edge <= ``MAX_EDGE``)."""
    return _decode(data)


def _decode(data: bytes) -> Any:
    """The image as RGB, long edge <= MAX_EDGE, padded white to at most OCR_MAX_ASPECT.

    The analyzer is normally given the pipeline's analysis derivative (already bounded); it
    still bounds what it decodes and what it hands the OCR, whose detector scales the *short*
    side up (a 1568x1 strip once became a tensor of gigabytes).
    """
    from PIL import Image, ImageOps

    if not data:
        raise PermanentError("empty_image", "no image bytes to analyze", stage=STAGE)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > MAX_DECODE_PIXELS:
                raise PermanentError(
                    "image_too_large",
                    f"{width}x{height} is more than the analyzer's {MAX_DECODE_PIXELS} pixels",
                    stage=STAGE,
                )
            opened.load()
            picture = ImageOps.exif_transpose(opened) or opened
            if picture.mode in ("RGBA", "LA", "P"):
                rgba = picture.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                picture = flat
            else:
                picture = picture.convert("RGB")
    except PermanentError:
        raise
    except Image.DecompressionBombError as exc:
        raise PermanentError("image_too_large", str(exc), stage=STAGE) from exc
    except Exception as exc:
        raise PermanentError(
            "invalid_image", f"cannot decode image: {type(exc).__name__}", stage=STAGE
        ) from exc
    if max(picture.size) > MAX_EDGE:
        picture.thumbnail((MAX_EDGE, MAX_EDGE))
    return _pad_for_ocr(picture)


def _pad_for_ocr(picture: Any) -> Any:
    from PIL import Image

    width, height = picture.size
    short = -(-max(width, height) // OCR_MAX_ASPECT)
    if min(width, height) >= short:
        return picture
    size = (width, short) if width >= height else (short, height)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(picture, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def build_analysis(lines: list[TextLine], picture: Any) -> Analysis:
    """Fill the analysis schema from OCR lines (reading order) and the image itself."""
    height = picture.size[1]
    texts = [ln.text for ln in lines]
    full = "\n".join(texts)
    vibes = image_vibes(picture)

    hashtags = _dedupe(HASHTAG_RE.findall(full))
    handles = _dedupe(HANDLE_RE.findall(full))
    category, subcategories, _ = classify(full)
    source = likely_source(full)

    audio = None
    locations: list[str] = []
    for text in texts:
        match = AUDIO_RE.match(text)
        if match and audio is None:
            audio = next(g for g in match.groups() if g).strip(" -·")
        pin = PIN_RE.match(text)
        if pin:
            locations.append(pin.group(1).strip())
        locations += [m.group(0).strip(" ,") for m in ADDRESS_RE.finditer(text)]
        locations += [m.group(0) for m in CITY_STATE_RE.finditer(text)]
    locations += [place for place, rx in _PLACE_RES if rx.search(full)]
    locations = _dedupe(locations)[:10]

    original_poster = None
    if source in ("TikTok", "Instagram", "X", "YouTube"):
        for line in lines:
            if re.fullmatch(r"@[\w.]{2,30}", line.text) and line.center_y > 0.5 * height:
                original_poster = line.text
                break

    headline = pick_headline(lines, height)
    prices = _dedupe([ln.text for ln in lines if PRICE_RE.search(ln.text)])
    objects = [name for name, rx in _OBJECT_RES.items() if rx.search(full)]
    if texts:
        objects.append("text overlay")
    if source not in ("other", "user-created"):
        objects.append(f"{source} interface")
    themes = []
    if category != UNCATEGORIZED:
        themes.append(THEMES.get(category, category.lower()))
    themes += [s for s in subcategories if s not in themes]
    if prices:
        themes.append("prices")
    emotions = [e for e, patterns in _EMOTION_RES.items() if any(p.search(full) for p in patterns)]

    body = [t for t in texts if not _is_ui(t) and _letters(t) >= 3 and t != headline]
    if texts:
        kind = f"{source} screenshot" if source not in ("other", "user-created") else "Image"
        topic = f" about {category.lower()}" if category != UNCATEGORIZED else ""
        lead = f"{kind}{topic} (local OCR analysis, no vision model)."
        quoted = " | ".join(body[:8])
        summary = _trim(
            f"{lead} Text: {headline}" + (f" | {quoted}" if quoted else ""), SUMMARY_MAX_CHARS
        )
    else:
        summary = (
            f"An image with no legible text ({', '.join(vibes)}); "
            "the local analyzer reads text only."
        )

    key_interest = (prices[0] if prices else locations[0] if locations else headline) or None
    prominent = sorted(
        (ln for ln in lines if _letters(ln.text) >= 2 and not _is_ui(ln.text)),
        key=lambda ln: ln.height,
        reverse=True,
    )
    hierarchy = _dedupe([_trim(ln.text, 80) for ln in prominent])[:5]

    return Analysis(
        category=category,
        subcategories=subcategories,
        headline=headline or ("Image without text" if not texts else _trim(texts[0], 140)),
        summary=summary,
        media_metadata=MediaMetadata(
            original_poster=original_poster,
            tagged_accounts=handles,
            location_tags=locations,
            audio_source=audio,
            hashtags=hashtags,
        ),
        image_details=ImageDetails(
            extracted_text=texts,
            objects=_dedupe(objects),
            themes=_dedupe(themes),
            emotions=emotions,
            vibes=vibes,
            likely_source=source,
            key_interest=key_interest,
            visual_hierarchy=hierarchy,
        ),
    )
