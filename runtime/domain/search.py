"""Search one user's items: keyword, semantic, or both (hybrid), with a relevance threshold.

Every statement here carries ``user_id`` in its WHERE clause; nothing of another tenant is ever
read, counted or returned.

Modes and their scores
======================

keyword
    The query is read with ``websearch_to_tsquery``'s syntax — ``"quoted phrase"`` is a phrase,
    ``-word`` / ``-"a phrase"`` excludes, ``x or y`` makes y an alternative to x (either one
    satisfies that term) — but the other words are OR-ed, not AND-ed: a five-word query still
    finds an item that has four of the words, and the score says how much of the query an item
    covers. Each query term is a word (its lexemes under the
    ``english`` text-search configuration, i.e. stemmed, stop words dropped) or a phrase. An
    item's score is the IDF-weighted share of the query's terms it contains, each term counted
    by the most important field it occurs in::

        score = sum_t idf(t) * field(t) / sum_t idf(t)        in [0, 1]

    with ``field(t)`` = 1.0 if the term occurs in a weight-A field (headline, category,
    subcategories), 0.8 for B (summary, key interest, themes, places, hashtags), 0.55 for C
    (objects, extracted text, poster, source), 0.35 for D (emotions, vibes, audio, visual
    hierarchy), and 0 if absent; a word matched only as a prefix counts ``PREFIX_FACTOR`` (0.8)
    of that. ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` (the BM25 form) over the user's
    own N documents, df of them containing t. So 1.0 means "every query term is in the item's
    headline/category", and a term the user's collection does not contain at all weighs the
    most — which is what lets "ski resorts Japan" find nothing in a collection that has Japan
    but no skiing, while a five-word query still finds the item with four distinctive ones.
    Ties are broken by ``ts_rank_cd`` (term frequency and proximity), then by item id.

    Cost bounded by the window, not by the matches. N and each word's df are kept per user by
    the database (``search_lexemes``, ``search_collections``, updated by triggers as documents
    are written, re-analysed and deleted), so no term is counted with a scan; a prefix, phrase or
    alternative is counted exactly in a collection of up to ``KEYWORD_EXACT_COUNT_MAX`` documents
    and estimated from its words' counts above that (see ``keyword_statistics``). Then at most
    ``KEYWORD_WINDOW`` matching documents are scored exactly, taken from the GIN index in stages,
    best candidates first: those holding every term; those missing one term (the lightest
    missing first); those holding each term, heaviest first — leaving out any stage whose
    documents cannot reach the threshold. A collection with at most ``KEYWORD_WINDOW`` matching
    documents is therefore ranked exactly (one index scan for all matches when the user has at
    most ``KEYWORD_WINDOW`` documents); a larger one gets the best of the window, and pagination
    reaches the window's documents.
    Prefix matching (``'photograph':*`` also finds "photography", ``'japan':*`` "Japanese"):
    every word whose stem has at least ``PREFIX_ALL_MIN_CHARS`` (5) characters — stemming does
    not join derived forms — and the last word of a query that does not end with a space (it
    may still be being typed: ``fuku`` finds Fukuoka) if it has at least 3.

semantic
    The query is embedded with ``embed_query`` (input_type "query") and compared with the stored
    document vectors by cosine: ``score = 1 - (embedding <=> query)``, the cosine similarity in
    [-1, 1]. A user with at most ``search_exact_scan_max`` documents (after filters) is scanned
    exactly; above that the HNSW index is used with pgvector's iterative index scan
    (``hnsw.iterative_scan = relaxed_order``, ``hnsw.ef_search``, ``hnsw.max_scan_tuples``) so
    that the tenant filter cannot starve the result; it over-fetches (4 x the page depth) and
    re-sorts by exact distance. ``ef_search`` grows with the page depth and with how little of
    the table the tenant holds after filters (``hnsw_ef_search``).

hybrid
    First, whether the user's (filtered) collection holds anything relevant at all. Two kinds of
    evidence count, neither of them one absolute cosine value:

    - keyword: the best keyword score reaches the ``keyword`` threshold (IDF-weighted, so it is
      already relative to the user's own collection);
    - meaning: the best cosine similarity *stands out* from the user's collection. The query's
      cosine similarities to (up to ``STATS_SAMPLE`` of) the user's documents give a mean and a
      standard deviation; the best match's z-score, minus the z-score the best of N unrelated
      items is expected to reach (the expected maximum of N standard normal draws, N the
      collection's size), is its *standout*, which must reach the ``hybrid`` threshold. A query
      about something absent still has a best match, but in a collection of that size it stands
      no further out than chance would put it. Below ``STATS_MIN_DOCUMENTS`` documents a
      distribution says nothing, and the best cosine must reach ``small_collection`` instead.

    If neither holds, the page is empty. If one does, the keyword list (items scoring at least
    ``hybrid_keyword``) and the semantic list (items with a z-score of at least
    ``hybrid_semantic``; in a collection under ``STATS_MIN_DOCUMENTS``, a cosine similarity of
    at least ``semantic``) are merged by weighted reciprocal rank fusion::

        fused = W_KEYWORD / (RRF_K + rank_keyword) + W_SEMANTIC / (RRF_K + rank_semantic)
        score = fused / ((W_KEYWORD + W_SEMANTIC) / (RRF_K + 1))            in (0, 1]

    with RRF_K = 60 and equal weights (0.5 / 0.5); a list the item is absent from contributes
    0. So 1.0 = ranked first by both measures, 0.5 = first by one and absent from the other.
    Equal scores are ordered by cosine similarity, then item id.

    With a reranker (``reranker=``, e.g. Voyage's), the first ``RERANK_DEPTH`` fused results are
    reordered by it over their search documents' text; their score is then the reranker's
    relevance score in [0, 1] and the page ends there. If the reranker cannot answer, the fused
    order stands.

Thresholds (``Thresholds``): one set per embedder (``DEFAULT_THRESHOLDS``, keyed by
``provider/model``; cosine values depend on the embedding model), each overridable by a setting
``search_threshold_<name>``. Keyword and semantic results are returned only if their score is at
least their mode's threshold, so a query about something absent returns an empty page. The
values were chosen by grid search in the retrieval evaluation (``benchmarks/evaluate_search.py``),
which also reports them cross-validated and on a validation query set: re-run it when changing
the embedder, and add its row to the table.

Pagination: results are ordered by (score desc, tie-break, item id); a page's ``next_cursor`` is
an opaque token naming the position after its last hit. The next page holds only hits strictly
after that position, so pages never overlap. A cursor is only valid for the same user, query,
mode, filters and thresholds; a cursor that was altered or belongs to another search raises
``InvalidCursor``. At most ``MAX_RESULTS`` hits are reachable through pagination.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from runtime.config import Settings, get_settings
from runtime.domain import cursors
from runtime.domain.cursors import InvalidCursor
from runtime.domain.documents import TEXT_SEARCH_CONFIG
from runtime.domain.vocabulary import MAX_LIMIT, SearchMode
from runtime.providers.base import Embedder, Reranker, RerankUnavailable

__all__ = [
    "InvalidCursor",
    "SearchFilters",
    "SearchHit",
    "SearchMode",
    "SearchPage",
    "Thresholds",
    "search",
]

log = logging.getLogger(__name__)

# -- limits -------------------------------------------------------------------------------------
MAX_QUERY_CHARS = 1000  # longer queries are cut (a 10k-character paste still searches)
MAX_TERMS = 32  # query terms beyond this are ignored
MAX_RESULTS = 1000  # hits reachable through pagination, per search

# -- keyword scoring ----------------------------------------------------------------------------
FIELD_WEIGHTS = {"A": 1.0, "B": 0.8, "C": 0.55, "D": 0.35}
PREFIX_FACTOR = 0.8  # a word matched only as a prefix counts this share of a full match
PREFIX_MIN_CHARS = 3  # a last word being typed: shorter ones are not prefix-matched
PREFIX_ALL_MIN_CHARS = 5  # any word whose stem has at least this many characters
TS_RANK_WEIGHTS = "{0.35, 0.55, 0.8, 1.0}"  # ts_rank_cd weights {D, C, B, A}, tie-break only
KEYWORD_WINDOW = 500  # matching documents scored exactly, per search (see keyword_ranked)
KEYWORD_SUBSET_TERMS = 6  # up to this many terms, a stage per term a document may miss
KEYWORD_EXACT_COUNT_MAX = 2000  # up to this many documents, every term's df is counted exactly
KEYWORD_PREFIX_FANOUT = 1000  # words a prefix's df estimate reads at most

# -- hybrid fusion ------------------------------------------------------------------------------
RRF_K = 60  # the rank constant (the usual value from Cormack et al., 2009)
W_KEYWORD = 0.5
W_SEMANTIC = 0.5
HYBRID_POOL = 100  # depth of each list fused (at least the depth the page needs)
RERANK_DEPTH = 30  # fused candidates a reranker reorders (a hybrid page with one ends there)
STATS_SAMPLE = 2000  # documents of the user's collection the cosine distribution is taken from
STATS_MIN_DOCUMENTS = 10  # below this, standing out means nothing: a cosine floor is used

# -- semantic (HNSW) ----------------------------------------------------------------------------
HNSW_MIN_EF_SEARCH = 40
HNSW_MAX_EF_SEARCH = 1000
HNSW_OVERFETCH = 4  # fetch this many times the needed depth (>= 40), then sort exactly
HNSW_EF_FACTOR = 1.8  # ef_search per row fetched, for a tenant holding the whole table

_CURSOR_VERSION = 1


@dataclass(frozen=True)
class SearchFilters:
    """Restrict results. ``created_from`` is inclusive, ``created_to`` exclusive (UTC if naive);
    ``category`` matches case-insensitively; ``status`` is an item status (e.g. ``ready``)."""

    category: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    status: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """Relevance thresholds, each on its own scale (see the module documentation).

    ``keyword``: minimum keyword score, [0, 1]: keyword mode's cut, and in hybrid the keyword
    evidence that the collection holds something relevant.
    ``semantic``: minimum cosine similarity, [-1, 1], in semantic mode.
    ``hybrid``: the *standout* (in standard deviations, see ``standout``) the best semantic match
    needs for hybrid mode to answer on meaning alone, when no keyword result reaches ``keyword``.
    ``hybrid_keyword``: the keyword score an item needs to enter hybrid's fused keyword list once
    hybrid answers, [0, 1].
    ``hybrid_semantic``: the z-score (standard deviations above the mean cosine of the user's
    collection) an item needs to enter hybrid's fused semantic list.
    ``small_collection``: the cosine similarity a meaning-only hybrid answer needs when the
    (filtered) collection has fewer than ``STATS_MIN_DOCUMENTS`` documents, too few to say what
    standing out means.

    Fields left out mean "no cut". Defaults come per embedder from ``DEFAULT_THRESHOLDS`` (cosine
    values and standouts depend on the embedding model), overridden by the settings
    ``search_threshold_*`` that are set.
    """

    keyword: float
    semantic: float
    hybrid: float
    hybrid_keyword: float = 0.0
    hybrid_semantic: float = -math.inf
    small_collection: float = -1.0

    @classmethod
    def for_embedder(cls, embedder: str, settings: Settings | None = None) -> Thresholds:
        """The defaults for ``embedder`` (``"provider/model"``), with the settings' overrides."""
        s = settings or get_settings()
        base = DEFAULT_THRESHOLDS.get(embedder, FALLBACK_THRESHOLDS)
        overrides = {
            name: value
            for name in (f.name for f in fields(cls))
            if (value := getattr(s, f"search_threshold_{name}", None)) is not None
        }
        return replace(base, **overrides)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, embedder: str = "local/all-MiniLM-L6-v2"
    ) -> Thresholds:
        return cls.for_embedder(embedder, settings)

    def as_list(self) -> list[float]:
        return [getattr(self, f.name) for f in fields(self)]


# Defaults per embedder ("provider/model"): each mode's values are the ones the grid search of
# benchmarks/evaluate_search.py chooses on all its tuning queries, golden and development (the
# same procedure its cross-validation scores on held-out folds). ``small_collection`` is not
# tuned there (the corpus has 55 items): it is the cosine floor the offline embedder's hybrid
# mode used before.
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "local/all-MiniLM-L6-v2": Thresholds(
        keyword=0.45,
        semantic=0.5,
        hybrid=0.25,
        hybrid_keyword=0.4,
        hybrid_semantic=2.5,
        small_collection=0.6,
    ),
}
# The larger offline model, chosen by the same grid: hybrid needs a clearer standout than with
# MiniLM (0.75) before it answers on meaning alone. small_collection is not tuned (as above).
DEFAULT_THRESHOLDS["local/all-mpnet-base-v2"] = Thresholds(
    keyword=0.45,
    semantic=0.35,
    hybrid=0.75,
    hybrid_keyword=0.4,
    hybrid_semantic=2.5,
    small_collection=0.6,
)
# Voyage's scale could not be measured (the evaluation needs a Voyage key): the scale-free
# values (keyword score, standouts) are the offline embedder's, the cosine ones the defaults all
# embedders had before the evaluation chose per-embedder values. Measure with
# ``benchmarks.evaluate_search --embedder voyage`` and replace this row.
DEFAULT_THRESHOLDS["voyage/voyage-3.5-lite"] = replace(
    DEFAULT_THRESHOLDS["local/all-MiniLM-L6-v2"], semantic=0.3, small_collection=0.6
)
# Any other embedder: the same reasoning.
FALLBACK_THRESHOLDS = DEFAULT_THRESHOLDS["voyage/voyage-3.5-lite"]


@dataclass(frozen=True)
class SearchHit:
    item_id: uuid.UUID
    score: float
    headline: str | None
    category: str | None
    summary: str | None
    thumbnail_key: str | None
    created_at: datetime
    status: str
    file_name: str | None = None


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_cursor: str | None
    mode: SearchMode


# =============================================================================================
# Query parsing
# =============================================================================================

# websearch_to_tsquery's syntax: "a phrase", -word, -"a phrase", or.
_CLAUSE = re.compile(r'(?P<neg>-?)"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+)')


@dataclass(frozen=True)
class _Clause:
    text: str
    phrase: bool
    negated: bool
    prefix: bool = False  # the word may still be being typed
    alternative: bool = False  # "x or y": an alternative to the previous clause


@dataclass(frozen=True)
class _Term:
    """One query term as tsquery text: ``exact`` and, for a prefix-matched word, ``prefix``."""

    exact: str
    prefix: str | None = None


@dataclass(frozen=True)
class _KeywordQuery:
    terms: list[_Term] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)


def clean_query(query: str | None) -> str:
    """Normalise a user query: NFKC, no control characters or lone surrogates, at most
    ``MAX_QUERY_CHARS`` characters, collapsed whitespace."""
    if not query:
        return ""
    query = unicodedata.normalize("NFKC", str(query))
    query = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch for ch in query
    )
    query = query.encode("utf-8", "ignore").decode("utf-8")
    return re.sub(r"\s+", " ", query[:MAX_QUERY_CHARS]).strip()


def has_words(query: str) -> bool:
    """True if the query has at least one letter or digit, in any script."""
    return any(ch.isalnum() for ch in query)


def _clauses(query: str, *, typing: bool) -> list[_Clause]:
    clauses: list[_Clause] = []
    alternative = False
    for match in _CLAUSE.finditer(query):
        if match.group("word") is not None:
            word = match.group("word")
            negated = word.startswith("-") and len(word) > 1
            word = word.lstrip("-")
            if word.lower() == "or" and not negated:
                alternative = bool(clauses) and not clauses[-1].negated
                continue
            if not word:
                continue
            clause = _Clause(word, phrase=False, negated=negated)
        else:
            phrase = match.group("phrase").strip()
            if not phrase:
                continue
            clause = _Clause(phrase, phrase=True, negated=bool(match.group("neg")))
        if alternative and not clause.negated:
            clause = replace(clause, alternative=True)
        alternative = False
        clauses.append(clause)
    if typing and clauses and not clauses[-1].phrase and not clauses[-1].negated:
        clauses[-1] = replace(clauses[-1], prefix=True)
    return clauses


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


_LEXEMES = text(
    f"""
    SELECT c.ord, t.n, t.alias, t.lexemes
    FROM unnest(CAST(:texts AS text[])) WITH ORDINALITY AS c(txt, ord)
    CROSS JOIN LATERAL ts_debug('{TEXT_SEARCH_CONFIG}', c.txt)
        WITH ORDINALITY AS t(alias, description, token, dictionaries, dictionary, lexemes, n)
    ORDER BY c.ord, t.n
    """
)
# A hyphenated word is parsed as the compound and then its parts; the parts are kept.
_COMPOUND_ALIASES = frozenset({"asciihword", "hword", "numhword"})


def parse_keyword_query(session: Session, query: str, *, typing: bool = False) -> _KeywordQuery:
    """The query's terms as tsquery texts, lexemes computed by PostgreSQL's own parser."""
    clauses = _clauses(query, typing=typing)
    if not clauses:
        return _KeywordQuery()
    rows = session.execute(_LEXEMES, {"texts": [c.text for c in clauses]}).all()
    # clause index -> [(lexeme, position)], positions counted as to_tsvector counts them (stop
    # words and compounds take a position), so that phrases keep their distances.
    lexemes: dict[int, list[tuple[str, int]]] = {}
    positions: dict[int, int] = {}
    for ordinal, _, alias, found in rows:
        if found is None:  # spaces and punctuation
            continue
        index = int(ordinal) - 1
        positions[index] = positions.get(index, 0) + 1
        if alias in _COMPOUND_ALIASES:
            continue
        for lexeme in found:
            lexemes.setdefault(index, []).append((lexeme, positions[index]))

    terms: list[_Term] = []
    negated: list[str] = []
    seen: set[str] = set()
    last_positive = -2  # index of the clause that made the last term
    for index, clause in enumerate(clauses):
        found = lexemes.get(index, [])
        if not found:
            continue  # only stop words or punctuation
        if clause.phrase:
            # Keep the distances between words (stop words leave gaps), as phraseto_tsquery does.
            parts = [_quote(found[0][0])]
            for (_, before), (lexeme, position) in itertools.pairwise(found):
                parts.append(f"<{max(1, position - before)}>")
                parts.append(_quote(lexeme))
            exact = " ".join(parts)
            prefix = None
            n_parts = len(found)
        else:
            words = list(dict.fromkeys(lex for lex, _ in found))
            exact = " & ".join(_quote(w) for w in words)
            prefix = None
            if len(words) == 1 and (
                (clause.prefix and len(words[0]) >= PREFIX_MIN_CHARS)
                or len(words[0]) >= PREFIX_ALL_MIN_CHARS
            ):
                prefix = _quote(words[0]) + ":*"
            n_parts = len(words)
        if n_parts > 1:
            exact = f"({exact})"
        if clause.negated:
            negated.append(exact)
        elif clause.alternative and terms and last_positive == index - 1:
            # websearch's "or": either alternative satisfies the term.
            before = terms[-1]
            merged_prefix = None
            if before.prefix or prefix:
                merged_prefix = f"({before.prefix or before.exact} | {prefix or exact})"
            terms[-1] = _Term(exact=f"({before.exact} | {exact})", prefix=merged_prefix)
            last_positive = index
        elif exact not in seen and len(terms) < MAX_TERMS:
            seen.add(exact)
            terms.append(_Term(exact=exact, prefix=prefix))
            last_positive = index
    return _KeywordQuery(terms=terms, negated=negated)


# =============================================================================================
# Filters
# =============================================================================================


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _filter_sql(filters: SearchFilters, params: dict[str, Any]) -> str:
    """Extra WHERE conditions on ``d`` (search_documents) and ``i`` (items)."""
    conditions = []
    if filters.category is not None:
        conditions.append("lower(d.category) = lower(:f_category)")
        params["f_category"] = filters.category
    if filters.created_from is not None:
        conditions.append("i.created_at >= :f_from")
        params["f_from"] = _utc(filters.created_from)
    if filters.created_to is not None:
        conditions.append("i.created_at < :f_to")
        params["f_to"] = _utc(filters.created_to)
    if filters.status is not None:
        conditions.append("i.status = :f_status")
        params["f_status"] = str(filters.status)
    return "".join(f" AND {c}" for c in conditions)


# =============================================================================================
# Ranked lists: (item_id, score, tie-break), best first, all at or above the threshold
# =============================================================================================

_Ranked = list[tuple[uuid.UUID, float, float]]


def keyword_ranked(
    session: Session,
    *,
    user_id: str,
    query: _KeywordQuery,
    filters: SearchFilters,
    threshold: float,
    depth: int,
) -> _Ranked:
    if not query.terms or depth <= 0:
        return []
    total, frequencies = keyword_statistics(session, user_id, query.terms)
    if total == 0:
        return []
    idf = [math.log(1.0 + (total - df + 0.5) / (df + 0.5)) for df in frequencies]
    idf_sum = sum(idf)
    weights = [value / idf_sum for value in idf]
    params: dict[str, Any] = {"user_id": user_id}
    strengths = []
    any_terms = []
    for n, term in enumerate(query.terms):
        params[f"w{n}"] = weights[n]
        strength = _field_case(params, f"q{n}", term.exact)
        any_terms.append(f"CAST(:q{n} AS tsquery)")
        if term.prefix:
            prefixed = _field_case(params, f"p{n}", term.prefix, PREFIX_FACTOR)
            strength = f"GREATEST({strength}, {prefixed})"
            any_terms.append(f"CAST(:p{n} AS tsquery)")
        strengths.append(f":w{n} * {strength}")
    if query.negated:
        params["negated"] = " | ".join(f"({neg})" for neg in query.negated)
    if total <= KEYWORD_WINDOW:
        # Every match fits the window: one index scan for all of them (the stages would each
        # read the terms' posting lists again, which in a table shared with other users are
        # long).
        params["stage0"] = " | ".join(f"({term.prefix or term.exact})" for term in query.terms)
        stages: list[tuple[str, str | None]] = [("stage0", None)]
    else:
        stages = _keyword_stages(query.terms, weights, threshold, params)
    if not stages:
        return []
    # The same window for every page of a search, so that pages cover it without gaps.
    params.update(threshold=threshold, depth=depth, window=KEYWORD_WINDOW)
    where = _filter_sql(filters, params)
    joined = " JOIN items i ON i.id = d.item_id AND i.user_id = :user_id" if "i." in where else ""

    # Each stage: its documents by the GIN index, read (and decompressed) once, less those an
    # earlier stage took (OFFSET 0 keeps that test above the decompression).
    def excluding(*names: str | None) -> str:
        tests = [f"NOT (tsv @@ CAST(:{name} AS tsquery))" for name in names if name]
        return f" WHERE {' AND '.join(tests)}" if tests else ""

    union = " UNION ALL ".join(
        f"(SELECT item_id, tsv FROM (SELECT d.item_id, d.tsv || CAST('' AS tsvector) AS tsv "
        f"FROM search_documents d{joined} WHERE d.user_id = :user_id "
        f"AND d.tsv @@ CAST(:{stage} AS tsquery){where} OFFSET 0) s"
        f"{excluding(before, 'negated' if query.negated else None)} LIMIT :window)"
        for stage, before in stages
    )
    # The window's documents are scored exactly: a term's field is the most important one it
    # occurs in (a query restricted to weight A, then A or B, ...), as the module docs say.
    sql = f"""
        WITH candidates AS MATERIALIZED (SELECT * FROM ({union}) u LIMIT :window),
        scored AS (
            SELECT item_id, ({" + ".join(strengths)}) AS score,
                   ts_rank_cd('{TS_RANK_WEIGHTS}', tsv, ({" || ".join(any_terms)}), 1) AS tiebreak
            FROM candidates
        )
        SELECT item_id, score, tiebreak FROM scored
        WHERE score >= :threshold
        ORDER BY score DESC, tiebreak DESC, item_id
        LIMIT :depth
    """
    # The stages are index-driven: a sequential scan would read the whole collection to find
    # the first rows of a rare stage.
    previous = _set_local(session, {"enable_seqscan": "off"})
    try:
        rows = session.execute(text(sql), params).all()
    finally:
        _set_local(session, previous)
    return [(r.item_id, float(r.score), float(r.tiebreak)) for r in rows]


_FIELD_TIERS = (("A", "A"), ("AB", "B"), ("ABC", "C"))


def _field_case(params: dict[str, Any], name: str, tsquery: str, factor: float = 1.0) -> str:
    """SQL for the weight of the most important field ``tsquery`` occurs in (0 if none)."""
    params[name] = tsquery
    cases = []
    for labels, tier in _FIELD_TIERS:
        params[f"{name}_{labels}"] = _restricted(tsquery, labels)
        cases.append(
            f"WHEN tsv @@ CAST(:{name}_{labels} AS tsquery) THEN {FIELD_WEIGHTS[tier] * factor}"
        )
    return (
        f"CASE WHEN NOT (tsv @@ CAST(:{name} AS tsquery)) THEN 0 {' '.join(cases)} "
        f"ELSE {FIELD_WEIGHTS['D'] * factor} END"
    )


def _restricted(tsquery: str, labels: str) -> str:
    """``tsquery`` with every lexeme restricted to the fields of weights ``labels``."""
    return _TSQUERY_TOKEN.sub(
        lambda m: (
            f"{m.group(0)}{'' if m.group(2) else ':'}{labels}"
            if m.group(1) is not None
            else m.group(0)
        ),
        tsquery,
    )


def _keyword_stages(
    terms: Sequence[_Term], weights: Sequence[float], threshold: float, params: dict[str, Any]
) -> list[tuple[str, str | None]]:
    """The candidate window's stages, best first, as the names of their tsquery parameters:
    (the stage's documents, those of the earlier stages or None).

    The documents holding every term; then (for up to ``KEYWORD_SUBSET_TERMS`` terms) those
    missing exactly one, the least weighty missing first; then those holding each term, weightiest
    (highest IDF) first. The stages are disjoint and together hold every document matching the
    query, so a window as large as the matches holds them all; a stage whose documents cannot
    reach ``threshold`` (they lack terms weighing more than ``1 - threshold``) is left out.
    """
    matches = [f"({term.prefix or term.exact})" for term in terms]
    order = sorted(range(len(terms)), key=lambda n: -weights[n])
    stages: list[tuple[str, str | None]] = []
    earlier: list[str] = []  # queries matching the documents earlier stages took

    def add(query: str, bound: float, taken: str, lacking: Sequence[str] = ()) -> None:
        if bound + 1e-9 < threshold:
            return
        name = f"stage{len(stages)}"
        # What the stage's documents lack is told to the index too (fewer rows read).
        params[name] = f"({query}) & !({' | '.join(lacking)})" if lacking else query
        before = None
        if earlier:
            before = f"{name}_before"
            params[before] = " | ".join(earlier)
        stages.append((name, before))
        earlier.append(taken)

    if len(terms) > 1:
        every = " & ".join(matches)
        add(every, 1.0, f"({every})")
        if len(terms) <= KEYWORD_SUBSET_TERMS and len(terms) > 2:
            for n in reversed(order):
                others = " & ".join(m for k, m in enumerate(matches) if k != n)
                add(others, 1.0 - weights[n], f"({others})", [matches[n]])
    missing = 0.0
    for rank, n in enumerate(order):
        add(matches[n], 1.0 - missing, matches[n], [matches[m] for m in order[:rank]])
        missing += weights[n]
    return stages


# -- keyword statistics ---------------------------------------------------------------------------

_TSQUERY_TOKEN = re.compile(r"'((?:[^']|'')*)'(:\*)?|[()&|]|<\d+>")


@dataclass(frozen=True)
class _Lexeme:
    text: str
    prefix: bool


# A tsquery (as keyword search writes them) as a tree: a lexeme, or ("|" or "&", [children]);
# a phrase ("a <1> b") counts as "&" for its document frequency.
_QueryTree = _Lexeme | tuple[str, list["_QueryTree"]]


def _query_tree(tsquery: str) -> _QueryTree:
    tokens: list[str | _Lexeme] = []
    for match in _TSQUERY_TOKEN.finditer(tsquery):
        if match.group(1) is not None:
            word = match.group(1).replace("\\\\", "\\").replace("''", "'")
            tokens.append(_Lexeme(word, bool(match.group(2))))
        else:  # an operator or a parenthesis; a phrase's <n> counts as &
            token = match.group(0)
            tokens.append("&" if token.startswith("<") else token)
    position = 0

    def either() -> _QueryTree:
        nonlocal position
        parts = [both()]
        while position < len(tokens) and tokens[position] == "|":
            position += 1
            parts.append(both())
        return parts[0] if len(parts) == 1 else ("|", parts)

    def both() -> _QueryTree:
        nonlocal position
        parts = [atom()]
        while position < len(tokens) and tokens[position] == "&":
            position += 1
            parts.append(atom())
        return parts[0] if len(parts) == 1 else ("&", parts)

    def atom() -> _QueryTree:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "(":
            tree = either()
            position += 1  # ")"
            return tree
        assert isinstance(token, _Lexeme)
        return token

    return either()


def _tree_lexemes(tree: _QueryTree) -> list[_Lexeme]:
    if isinstance(tree, _Lexeme):
        return [tree]
    return [lexeme for child in tree[1] for lexeme in _tree_lexemes(child)]


def keyword_statistics(
    session: Session, user_id: str, terms: Sequence[_Term]
) -> tuple[int, list[int]]:
    """The user's number of documents and each term's document frequency.

    Both come from the statistics the database keeps per user (``search_lexemes``,
    ``search_collections``), so no term costs a scan of its matches. A term that is one word
    (matched exactly) reads its count. A prefix, phrase, compound or alternative is counted
    exactly in a collection of up to ``KEYWORD_EXACT_COUNT_MAX`` documents, and above that is
    estimated from its words' counts: a phrase or compound as its rarest word (the documents
    holding all of them are among those), an alternative or a prefix's words as the union of
    independent sets, ``N * (1 - prod(1 - df_i / N))``.
    """
    total = session.execute(
        text("SELECT documents FROM search_collections WHERE user_id = :user_id"),
        {"user_id": user_id},
    ).scalar()
    total = max(int(total or 0), 0)
    if total == 0:
        return 0, [0 for _ in terms]
    queries = [term.prefix or term.exact for term in terms]
    trees = [_query_tree(q) for q in queries]
    complex_terms = [n for n, tree in enumerate(trees) if not _plain(tree)]
    exact: dict[int, int] = {}
    if complex_terms and total <= KEYWORD_EXACT_COUNT_MAX:
        params: dict[str, Any] = {"user_id": user_id}
        counts = []
        for n in complex_terms:
            params[f"t{n}"] = queries[n]
            counts.append(
                f"(SELECT count(*) FROM search_documents WHERE user_id = :user_id "
                f"AND tsv @@ CAST(:t{n} AS tsquery))"
            )
        row = session.execute(text("SELECT " + ", ".join(counts)), params).one()
        exact = dict(zip(complex_terms, (int(c) for c in row), strict=True))
    lexemes = {lex for n, tree in enumerate(trees) if n not in exact for lex in _tree_lexemes(tree)}
    words = sorted({lex.text for lex in lexemes if not lex.prefix})
    prefixes = sorted({lex.text for lex in lexemes if lex.prefix})
    df: dict[str, int] = {}
    expanded: dict[str, list[int]] = {p: [] for p in prefixes}
    if words:
        for lexeme, documents in session.execute(
            text(
                "SELECT lexeme, documents FROM search_lexemes "
                "WHERE user_id = :user_id AND lexeme = ANY(CAST(:words AS text[]))"
            ),
            {"user_id": user_id, "words": words},
        ):
            df[lexeme] = int(documents)
    if prefixes:
        for prefix, documents in session.execute(
            text(
                """
                SELECT p.prefix, s.documents
                FROM unnest(CAST(:prefixes AS text[])) AS p(prefix)
                CROSS JOIN LATERAL (
                    SELECT documents FROM search_lexemes
                    WHERE user_id = :user_id AND documents > 0
                      AND lexeme >= p.prefix COLLATE "C"
                      AND lexeme < (p.prefix || chr(1114111)) COLLATE "C"
                    LIMIT :fanout
                ) s
                """
            ),
            {"user_id": user_id, "prefixes": prefixes, "fanout": KEYWORD_PREFIX_FANOUT},
        ):
            expanded[prefix].append(int(documents))

    def estimate(tree: _QueryTree) -> float:
        if isinstance(tree, _Lexeme):
            if tree.prefix:
                return _union(total, expanded.get(tree.text, []))
            return min(df.get(tree.text, 0), total)
        operator, children = tree
        values = [estimate(child) for child in children]
        return _union(total, values) if operator == "|" else min(values)

    return total, [
        exact[n] if n in exact else round(estimate(tree)) for n, tree in enumerate(trees)
    ]


def _plain(tree: _QueryTree) -> bool:
    return isinstance(tree, _Lexeme) and not tree.prefix


def _union(total: int, frequencies: Sequence[float]) -> float:
    """The expected size of the union of independent subsets of ``total`` documents."""
    missing = 1.0
    for df in frequencies:
        missing *= 1.0 - min(max(df, 0.0), total) / total
    return total * (1.0 - missing)


def _vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def semantic_ranked(
    session: Session,
    *,
    user_id: str,
    vector: Sequence[float],
    filters: SearchFilters,
    threshold: float,
    depth: int,
    exact_scan_max: int,
) -> _Ranked:
    if depth <= 0:
        return []
    params: dict[str, Any] = {"user_id": user_id, "vector": _vector_literal(vector)}
    where = _filter_sql(filters, params)
    params.update(threshold=threshold, depth=depth, cap=exact_scan_max + 1)
    joined = (
        "FROM search_documents d JOIN items i ON i.id = d.item_id AND i.user_id = :user_id "
        f"WHERE d.user_id = :user_id{where}"
    )
    candidates = session.execute(
        text(f"SELECT count(*) FROM (SELECT 1 {joined} LIMIT :cap) c"), params
    ).scalar_one()
    if candidates > exact_scan_max:
        # The tenant's share of the table (its filtered documents, or all of them if there are
        # too many to count cheaply) against the table's size as last analysed.
        row = session.execute(
            text(
                "SELECT (SELECT documents FROM search_collections WHERE user_id = :user_id), "
                "(SELECT reltuples FROM pg_class WHERE oid = CAST('search_documents' AS regclass))"
            ),
            {"user_id": user_id},
        ).one()
        held = max(int(row[0] or 0), candidates)
        selectivity = held / max(float(row[1] or 0.0), held)
    if candidates <= exact_scan_max:
        # Exact: the distance of each of the user's (filtered) documents. The materialized CTE
        # keeps the planner from answering the ORDER BY with the (approximate) HNSW index.
        sql = f"""
            WITH scored AS MATERIALIZED (
                SELECT d.item_id, d.embedding <=> CAST(:vector AS vector) AS distance {joined}
            )
            SELECT item_id, 1 - distance AS score FROM scored
            WHERE 1 - distance >= :threshold
            ORDER BY distance, item_id
            LIMIT :depth
        """
        rows = session.execute(text(sql), params).all()
    else:
        fetch = max(HNSW_MIN_EF_SEARCH, depth * HNSW_OVERFETCH)
        params["fetch"] = fetch
        ef_search = hnsw_ef_search(fetch, selectivity)
        settings = get_settings()
        previous = _set_local(
            session,
            {
                "hnsw.iterative_scan": "relaxed_order",
                "hnsw.ef_search": str(ef_search),
                "hnsw.max_scan_tuples": str(settings.search_hnsw_max_scan_tuples),
                # Above the exact-scan size the index is the plan: without this, PostgreSQL may
                # still sort the tenant's documents (a 10% tenant of 100,000: p95 67 ms).
                "enable_sort": "off",
            },
        )
        try:
            # The iterative scan keeps walking the index until `fetch` rows pass the tenant and
            # filter conditions (or max_scan_tuples is reached); relaxed order may return them
            # slightly out of order, so they are re-sorted by exact distance outside the CTE,
            # where the threshold is also applied (pgvector's recommended shape).
            sql = f"""
                WITH nearest AS MATERIALIZED (
                    SELECT d.item_id, d.embedding <=> CAST(:vector AS vector) AS distance
                    {joined}
                    ORDER BY d.embedding <=> CAST(:vector AS vector)
                    LIMIT :fetch
                )
                SELECT item_id, 1 - distance AS score FROM nearest
                WHERE 1 - distance >= :threshold
                ORDER BY distance, item_id
                LIMIT :depth
            """
            rows = session.execute(text(sql), params).all()
        finally:
            _set_local(session, previous)
    return [(r.item_id, float(r.score), 0.0) for r in rows]


def hnsw_ef_search(fetch: int, selectivity: float) -> int:
    """``hnsw.ef_search`` for a search that needs ``fetch`` rows (4 x the page depth) from a
    tenant holding ``selectivity`` of the table (after filters): the graph search keeps
    ``fetch * HNSW_EF_FACTOR / sqrt(selectivity)`` candidates, within [``HNSW_MIN_EF_SEARCH``,
    ``HNSW_MAX_EF_SEARCH``], so that a tenant sharing the index with others (whose vectors fill the
    candidate list and are filtered out) keeps its recall, and a deeper page gets a wider search.
    """
    share = min(1.0, max(selectivity, 1e-6))
    wanted = math.ceil(fetch * HNSW_EF_FACTOR / math.sqrt(share))
    return min(HNSW_MAX_EF_SEARCH, max(HNSW_MIN_EF_SEARCH, fetch, wanted))


def _set_local(session: Session, values: dict[str, str | None]) -> dict[str, str | None]:
    """Set transaction-local settings; returns the previous values (None = unset)."""
    previous: dict[str, str | None] = {}
    for name, value in values.items():
        previous[name] = session.execute(
            text("SELECT current_setting(:name, true)"), {"name": name}
        ).scalar_one()
        if value is not None:
            session.execute(
                text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
            )
    return previous


@dataclass(frozen=True)
class CollectionStats:
    """The query's cosine similarities over (a sample of) the user's filtered collection."""

    documents: int
    mean: float
    std: float

    def z(self, cosine: float) -> float:
        """Standard deviations above the collection's mean similarity."""
        return (cosine - self.mean) / self.std if self.std > 0 else 0.0

    def cosine_at(self, z: float) -> float:
        """The cosine similarity that has z-score ``z`` (the inverse of ``z``)."""
        return self.mean + z * self.std if math.isfinite(z) else -1.0


def semantic_stats(
    session: Session, *, user_id: str, vector: Sequence[float], filters: SearchFilters
) -> CollectionStats:
    """Mean and standard deviation of the query's cosine similarity to at most ``STATS_SAMPLE``
    of the user's (filtered) documents: all of them in a collection up to that size."""
    params: dict[str, Any] = {"user_id": user_id, "vector": _vector_literal(vector)}
    where = _filter_sql(filters, params)
    params["sample"] = STATS_SAMPLE
    row = session.execute(
        text(
            f"""
            SELECT count(*), avg(score), stddev_pop(score) FROM (
                SELECT 1 - (d.embedding <=> CAST(:vector AS vector)) AS score
                FROM search_documents d JOIN items i ON i.id = d.item_id AND i.user_id = :user_id
                WHERE d.user_id = :user_id{where}
                LIMIT :sample
            ) s
            """
        ),
        params,
    ).one()
    return CollectionStats(int(row[0]), float(row[1] or 0.0), float(row[2] or 0.0))


def expected_best_z(documents: int) -> float:
    """The z-score the best of ``documents`` unrelated items is expected to reach: the
    expected maximum of that many standard normal draws (its extreme-value approximation)."""
    if documents < 2:
        return 0.0
    a = math.sqrt(2.0 * math.log(documents))
    return a - (math.log(math.log(documents)) + math.log(4.0 * math.pi)) / (2.0 * a)


def standout(cosine: float, stats: CollectionStats) -> float:
    """How far (in standard deviations) a match stands above the best match an unrelated
    query would be expected to find in a collection of this size."""
    return stats.z(cosine) - expected_best_z(stats.documents)


def hybrid_rank(
    keyword: _Ranked, semantic: _Ranked, stats: CollectionStats, thresholds: Thresholds
) -> _Ranked:
    """Hybrid's answer from the two ranked lists (best first) and the collection's similarity
    distribution: nothing if nothing is relevant, else the fusion of the cut lists."""
    best_keyword = keyword[0][1] if keyword else 0.0
    best_cosine = semantic[0][1] if semantic else -1.0
    if stats.documents < STATS_MIN_DOCUMENTS:
        meaning = bool(semantic) and best_cosine >= thresholds.small_collection
    else:
        meaning = bool(semantic) and standout(best_cosine, stats) >= thresholds.hybrid
    if not (meaning or (keyword and best_keyword >= thresholds.keyword)):
        return []
    if stats.documents < STATS_MIN_DOCUMENTS:  # no distribution: semantic mode's cosine cut
        cosine_cut = thresholds.semantic
    else:
        cosine_cut = stats.cosine_at(thresholds.hybrid_semantic)
    return fuse(
        [hit for hit in keyword if hit[1] >= thresholds.hybrid_keyword],
        [hit for hit in semantic if hit[1] >= cosine_cut],
    )


def fuse(keyword: _Ranked, semantic: _Ranked) -> _Ranked:
    """Weighted reciprocal rank fusion, normalised to (0, 1] (see the module documentation)."""
    best = (W_KEYWORD + W_SEMANTIC) / (RRF_K + 1)
    fused: dict[uuid.UUID, float] = {}
    for weight, ranked in ((W_KEYWORD, keyword), (W_SEMANTIC, semantic)):
        for rank, (item_id, _, _) in enumerate(ranked, start=1):
            fused[item_id] = fused.get(item_id, 0.0) + weight / (RRF_K + rank)
    semantic_score = {item_id: score for item_id, score, _ in semantic}
    # Tie-break equal fusions by the cosine similarity (then by id).
    return [
        (item_id, score / best, semantic_score.get(item_id, -2.0))
        for item_id, score in fused.items()
    ]


# =============================================================================================
# Cursor
# =============================================================================================


def _fingerprint(
    user_id: str,
    query: str,
    mode: SearchMode,
    filters: SearchFilters,
    thresholds: Thresholds,
    reranker: Reranker | None = None,
) -> str:
    def iso(value: datetime | None) -> str | None:
        return _utc(value).isoformat() if value else None

    material = json.dumps(
        [
            user_id,
            query,
            str(mode),
            filters.category,
            iso(filters.created_from),
            iso(filters.created_to),
            filters.status,
            thresholds.as_list(),
            f"{reranker.provider}/{reranker.model}" if reranker else None,
        ],
        ensure_ascii=False,
    )
    return hashlib.blake2b(material.encode(), digest_size=12).hexdigest()


def encode_cursor(fingerprint: str, offset: int, key: tuple[float, float, uuid.UUID]) -> str:
    return cursors.seal(
        {"v": _CURSOR_VERSION, "f": fingerprint, "o": offset, "k": [key[0], key[1], str(key[2])]}
    )


def decode_cursor(cursor: str, fingerprint: str) -> tuple[int, tuple[float, float, uuid.UUID]]:
    """The position a cursor of this search names; ``InvalidCursor`` for any other cursor
    (its MAC, a deployment secret, is checked before any of its content is read)."""
    data = cursors.unseal(cursor)
    if data.get("v") != _CURSOR_VERSION or data.get("f") != fingerprint:
        raise InvalidCursor("cursor belongs to another search")
    offset, position = data.get("o"), data.get("k")
    if type(offset) is not int or not 0 < offset <= MAX_RESULTS:
        raise InvalidCursor("cursor offset out of range")
    if not isinstance(position, list) or len(position) != 3:
        raise InvalidCursor("malformed cursor position")
    score, tiebreak, item = position
    if not all(_is_bounded_number(x) for x in (score, tiebreak)):
        raise InvalidCursor("cursor position is not a number")
    if not isinstance(item, str) or len(item) != 36:
        raise InvalidCursor("malformed cursor position")
    try:
        return offset, (float(score), float(tiebreak), uuid.UUID(item))
    except ValueError:
        raise InvalidCursor("malformed cursor position") from None


def _is_bounded_number(value: object) -> bool:
    """A finite JSON number of sane size (NaN, infinities and 400-digit integers are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= 1e6


def _after(hit: tuple[uuid.UUID, float, float], key: tuple[float, float, uuid.UUID]) -> bool:
    """True if ``hit`` comes strictly after the position ``key`` in result order."""
    item_id, score, tiebreak = hit
    if score != key[0]:
        return score < key[0]
    if tiebreak != key[1]:
        return tiebreak < key[1]
    return str(item_id) > str(key[2])


# =============================================================================================
# search
# =============================================================================================

_DISPLAY = text(
    """
    SELECT i.id, i.created_at, i.status, i.derived_keys ->> 'thumb_256' AS thumbnail_key,
           i.file_name, d.category, a.result ->> 'headline' AS headline,
           a.result ->> 'summary' AS summary
    FROM items i
    JOIN search_documents d ON d.item_id = i.id AND d.user_id = :user_id
    LEFT JOIN analyses a
      ON a.item_id = i.id AND a.user_id = :user_id AND a.version = d.analysis_version
    WHERE i.user_id = :user_id AND i.id = ANY(CAST(:ids AS uuid[]))
    """
)


def search(
    session: Session,
    embedder: Embedder,
    *,
    user_id: str,
    query: str,
    mode: SearchMode = SearchMode.HYBRID,
    filters: SearchFilters = SearchFilters(),
    limit: int = 20,
    cursor: str | None = None,
    thresholds: Thresholds | None = None,
    reranker: Reranker | None = None,
) -> SearchPage:
    """One page of ``user_id``'s items matching ``query``, best first (see the module docs).

    Never raises for the query's content: an empty, punctuation-only, non-Latin or very long
    query gives a (possibly empty) page. Raises ``InvalidCursor`` for a cursor this search did
    not issue.
    """
    mode = SearchMode(mode)
    settings = get_settings()
    thresholds = thresholds or Thresholds.for_embedder(
        f"{embedder.provider}/{embedder.model}", settings
    )
    limit = max(1, min(int(limit), MAX_LIMIT))
    raw = query or ""
    cleaned = clean_query(raw)
    if mode is not SearchMode.HYBRID:
        reranker = None
    fingerprint = _fingerprint(user_id, cleaned, mode, filters, thresholds, reranker)
    offset, key = 0, None
    if cursor:
        offset, key = decode_cursor(cursor, fingerprint)
    if not cleaned or not has_words(cleaned):
        return SearchPage(hits=[], next_cursor=None, mode=mode)

    depth = min(offset + limit + 1, MAX_RESULTS)
    if depth <= offset:
        return SearchPage(hits=[], next_cursor=None, mode=mode)
    typing = len(raw) <= MAX_QUERY_CHARS and not raw[-1:].isspace()

    ranked: _Ranked
    if mode is SearchMode.KEYWORD:
        ranked = keyword_ranked(
            session,
            user_id=user_id,
            query=parse_keyword_query(session, cleaned, typing=typing),
            filters=filters,
            threshold=thresholds.keyword,
            depth=depth,
        )
    elif mode is SearchMode.SEMANTIC:
        ranked = semantic_ranked(
            session,
            user_id=user_id,
            vector=embedder.embed_query(cleaned),
            filters=filters,
            threshold=thresholds.semantic,
            depth=depth,
            exact_scan_max=settings.search_exact_scan_max,
        )
    else:
        pool = max(HYBRID_POOL, depth)
        vector = embedder.embed_query(cleaned)
        stats = semantic_stats(session, user_id=user_id, vector=vector, filters=filters)
        keyword = keyword_ranked(
            session,
            user_id=user_id,
            query=parse_keyword_query(session, cleaned, typing=typing),
            filters=filters,
            threshold=min(thresholds.keyword, thresholds.hybrid_keyword),
            depth=pool,
        )
        semantic = semantic_ranked(
            session,
            user_id=user_id,
            vector=vector,
            filters=filters,
            # The best match is needed for the decision; the list is cut by hybrid_rank.
            threshold=-1.0,
            depth=pool,
            exact_scan_max=settings.search_exact_scan_max,
        )
        ranked = hybrid_rank(keyword, semantic, stats, thresholds)
        if reranker is not None and ranked:
            ranked = rerank(session, reranker, user_id, cleaned, ordered(ranked)[:RERANK_DEPTH])

    ranked = ordered(ranked)[:MAX_RESULTS]
    if key is not None:
        ranked = [hit for hit in ranked if _after(hit, key)]
    page, more = ranked[:limit], len(ranked) > limit
    next_cursor = None
    if more and offset + len(page) < MAX_RESULTS:
        last = page[-1]
        next_cursor = encode_cursor(fingerprint, offset + len(page), (last[1], last[2], last[0]))
    return SearchPage(hits=_hits(session, user_id, page), next_cursor=next_cursor, mode=mode)


def rerank(
    session: Session, reranker: Reranker, user_id: str, query: str, candidates: _Ranked
) -> _Ranked:
    """The candidates reordered by the reranker over their search documents' text: score = its
    relevance score, tie-break = the fused score. If it cannot answer, the candidates as they
    were."""
    rows = session.execute(
        text(
            "SELECT item_id, content FROM search_documents "
            "WHERE user_id = :user_id AND item_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"user_id": user_id, "ids": [str(item_id) for item_id, _, _ in candidates]},
    ).all()
    content = {row.item_id: row.content for row in rows}
    present = [hit for hit in candidates if content.get(hit[0])]
    if not present:
        return candidates
    try:
        scores = reranker.rerank(query, [content[hit[0]] for hit in present], len(present))
    except RerankUnavailable as exc:
        log.warning("reranker unavailable, keeping the fused order: %s", exc)
        return candidates
    seen: set[int] = set()
    reranked = []
    for index, score in scores:
        if index not in seen:
            seen.add(index)
            reranked.append((present[index][0], score, present[index][1]))
    return reranked


def ordered(ranked: _Ranked) -> _Ranked:
    """Result order: score, then tie-break, both descending, then item id."""
    return sorted(ranked, key=lambda hit: (-hit[1], -hit[2], str(hit[0])))


def _hits(session: Session, user_id: str, page: _Ranked) -> list[SearchHit]:
    if not page:
        return []
    rows = {
        row.id: row
        for row in session.execute(
            _DISPLAY, {"user_id": user_id, "ids": [str(item_id) for item_id, _, _ in page]}
        )
    }
    hits = []
    for item_id, score, _ in page:
        row = rows.get(item_id)
        if row is None:  # deleted between the ranking and this read
            continue
        hits.append(
            SearchHit(
                item_id=item_id,
                score=score,
                headline=row.headline or None,
                category=row.category,
                summary=row.summary or None,
                thumbnail_key=row.thumbnail_key,
                created_at=row.created_at,
                status=row.status,
                file_name=row.file_name,
            )
        )
    return hits
