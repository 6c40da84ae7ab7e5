"""What a user without API keys gets: the golden images through the offline pipeline.

Each of ``../shared/datasets/golden/images/<item_id>.jpg`` goes through the thumbnail stage's
``process_image`` (its ``analysis`` rendition, long edge <= 1568 px) and the offline analyzer
(``LocalAnalyzer``: OCR + heuristics); ``benchmarks.evaluate_search --from-images`` then indexes
those analyses with the embedder and evaluates the same queries on them.

The images are analysed in a child process whose address space is capped (``RLIMIT_AS``), one
at a time, so that no image can take the machine's memory. The OCR lines are cached in a JSON
file outside the repository (they hold text read from the dataset's images); the analyses are
rebuilt from them by the current heuristics on every run.

Agreement with the human-reviewed analyses:
- category: the share of items whose offline category equals the golden one (case-insensitive);
- recognisable headline: the share of items whose offline headline contains at least one
  *distinctive* word of the golden headline, a stem (PostgreSQL's ``english`` configuration)
  that occurs in at most ``DISTINCTIVE_MAX_DF`` of the 55 golden headlines (a name such as
  "Ichiran" or "Shikisai", not "Tokyo" or "guide"), i.e. one a person would know the item by.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

MEMORY_LIMIT_BYTES = 4 * 1024**3  # the analyzing child's address space (OCR models included)
DISTINCTIVE_MAX_DF = 3
DEFAULT_CACHE = Path("/tmp/collections-offline-ocr-lines.json")


def _analyse(paths: list[str], ocr_cache: str, out: str) -> None:
    """Child process: cap memory, then analyse each image as the pipeline would. OCR lines are
    cached (reading them is the slow part); the analysis is built from them each time."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    from dataclasses import asdict

    from runtime.domain.images import process_image
    from runtime.providers.local_analyzer import TextLine, build_analysis, decode, read_lines

    cache_path = Path(ocr_cache)
    cached = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    records = []
    for path in paths:
        item_id = Path(path).stem
        started = time.perf_counter()
        try:
            processed = process_image(Path(path).read_bytes())
            rendition = next(r for r in processed.renditions if r.name == "analysis")
            picture = decode(rendition.data)
            if item_id not in cached:
                cached[item_id] = [asdict(line) for line in read_lines(picture)]
                cache_path.write_text(json.dumps(cached, ensure_ascii=False))
            lines = [TextLine(**line) for line in cached[item_id]]
            analysis = build_analysis(lines, picture).model_dump(mode="json")
            error = None
        except Exception as exc:  # reported, and the item is left out of the corpus
            analysis, error = None, f"{type(exc).__name__}: {exc}"[:300]
        records.append(
            {
                "item_id": item_id,
                "analysis": analysis,
                "error": error,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    Path(out).write_text(json.dumps(records, ensure_ascii=False))


def offline_records(
    images: Path, golden: list[dict[str, Any]], cache: Path = DEFAULT_CACHE
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(analyses with their ``item_id`` for the evaluation's corpus, per-image reports)."""
    reports = analyse_images(images, [str(g["item_id"]) for g in golden], cache)
    records = [{"item_id": r["item_id"], **r["analysis"]} for r in reports if r["analysis"]]
    return records, reports


def analyse_images(
    images: Path, item_ids: list[str], cache: Path = DEFAULT_CACHE
) -> list[dict[str, Any]]:
    """``[{item_id, analysis, error, seconds}]`` for the images of ``item_ids``: OCR lines from
    ``cache`` when it has them (the OCR models are fixed by the wheel), the analysis always built
    by the current heuristics."""
    paths = [str(images / f"{item_id}.jpg") for item_id in item_ids]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} golden images missing, e.g. {missing[0]}")
    out = cache.with_suffix(".out.json")
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_analyse, args=(paths, str(cache), str(out)))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the analyzing process failed (exit code {child.exitcode})")
    records = json.loads(out.read_text())
    out.unlink()
    return records


def agreement(session: Any, offline: dict[str, dict[str, Any]], golden: list[dict]) -> dict:
    """Category and recognisable-headline agreement of ``offline`` (item id -> analysis) with
    the golden analyses (see the module documentation)."""
    from sqlalchemy import text

    from runtime.domain.documents import TEXT_SEARCH_CONFIG

    def stems(value: str) -> set[str]:
        return set(
            session.execute(
                text(f"SELECT unnest(tsvector_to_array(to_tsvector('{TEXT_SEARCH_CONFIG}', :t)))"),
                {"t": value or ""},
            ).scalars()
        )

    headline_stems = {str(g["item_id"]): stems(g.get("headline") or "") for g in golden}
    df: dict[str, int] = {}
    for words in headline_stems.values():
        for word in words:
            df[word] = df.get(word, 0) + 1
    category = recognisable = judged = 0
    for g in golden:
        item_id = str(g["item_id"])
        mine = offline.get(item_id)
        if mine is None:
            continue
        judged += 1
        if (mine.get("category") or "").lower() == (g.get("category") or "").lower():
            category += 1
        distinctive = {w for w in headline_stems[item_id] if df[w] <= DISTINCTIVE_MAX_DF}
        if distinctive & stems(mine.get("headline") or ""):
            recognisable += 1
    return {
        "items": judged,
        "category_agreement": round(category / judged, 3) if judged else 0.0,
        "recognisable_headlines": round(recognisable / judged, 3) if judged else 0.0,
        "golden_headlines_with_a_distinctive_word": sum(
            1
            for g in golden
            if any(df[w] <= DISTINCTIVE_MAX_DF for w in headline_stems[str(g["item_id"])])
        ),
    }
