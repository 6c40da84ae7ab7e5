"""Cost per 1,000 images on AWS, from the measured figures and list prices.

    uv run python -m benchmarks.cost

Reads what the other benchmarks measured (benchmarks/results/thumbnails.json, api_load.json,
pipeline.json) when present and measures the rest here on the screenshots: the renditions'
sizes (``process_image``), the search documents' length (embedding tokens), and the Claude
tokens per analysis as the analyzer records them: the screenshots' analysis derivatives are
analysed in sequence by ``AnthropicAnalyzer`` (the real request, prompt caching included)
against the project's fake Messages API answering with the golden analyses, which reports usage
as the API does (uncached input, cache writes, cache reads, output; ~4 characters per token,
image tokens = width x height / 750). Cache writes are billed at 1.25x the input price, reads
at 0.1x.

Assumptions that are not measured here (no AWS account, no API keys) are marked as such: the
Claude call's duration (the analyze Lambda waits for it), the Voyage call's duration, and how
many API requests a user makes per image. Per-image costs exclude fixed monthly costs (RDS,
NAT-free VPC endpoints, CloudWatch).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks._common import DATASETS, RESULTS, table, write_results
from runtime.topology import function

PRICES_DATE = "2025 list prices (us-east-1), as published on the vendors' pricing pages"
PRICES = {
    "lambda_arm_gb_s": 0.0000133334,  # AWS Lambda, Arm, first 6 billion GB-s / month
    "lambda_request": 0.20 / 1e6,
    "claude_sonnet_input_token": 3.00 / 1e6,  # Claude Sonnet 4.x
    "claude_sonnet_output_token": 15.00 / 1e6,
    "claude_sonnet_cache_write_token": 3.75 / 1e6,  # 5-minute cache: 1.25x input
    "claude_sonnet_cache_read_token": 0.30 / 1e6,  # 0.1x input
    "voyage_35_lite_token": 0.02 / 1e6,  # voyage-3.5-lite (first 200M tokens free, ignored)
    "s3_put": 0.005 / 1000,  # S3 Standard PUT/COPY/POST/LIST
    "s3_get": 0.0004 / 1000,
    "s3_gb_month": 0.023,
    "eventbridge_custom_event": 1.00 / 1e6,  # S3's own events on the default bus are free
    "dynamodb_write_request": 0.625 / 1e6,  # on-demand WRU (idempotency record)
    "dynamodb_read_request": 0.125 / 1e6,
}
ASSUMED = {
    "claude_call_s": 10.0,  # ~700 output tokens at ~70-100 tokens/s plus image prefill
    "voyage_call_s": 0.3,
    "api_requests_per_image": 6,  # create, upload status poll x2, list, get, one search
    "thumbnail_io_s": 0.4,  # S3 GET original + 3 PUTs + DB + event, on top of the compute
    "embed_db_s": 0.05,
    "analyze_db_s": 0.1,
    "thumbnail_views_per_image_month": 3,
}
TARGET_USD = 15.0  # per 1,000 images, same model and schema
CHARS_PER_TOKEN = 4.0
CHARS_PER_JSON_TOKEN = 3.5


def load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def measure_images(folder: Path, count: int = 12) -> dict[str, float]:
    from runtime.domain.images import process_image

    files = sorted(folder.glob("*.jpg"))[:count]
    if not files:
        return {"original_bytes": 1_000_000, "derived_bytes": 250_000, "analysis_px": 721 * 1568}
    original, derived, pixels = [], [], []
    for path in files:
        data = path.read_bytes()
        done = process_image(data)
        original.append(len(data))
        derived.append(sum(len(r.data) for r in done.renditions))
        analysis = next(r for r in done.renditions if r.name == "analysis")
        pixels.append(analysis.width * analysis.height)
    return {
        "original_bytes": statistics.mean(original),
        "derived_bytes": statistics.mean(derived),
        "analysis_px": statistics.mean(pixels),
    }


def measure_text(golden: Path) -> dict[str, float]:
    from runtime.domain.analysis import Analysis
    from runtime.domain.documents import build_document
    from runtime.providers.anthropic_analyzer import SYSTEM_PROMPT, USER_PROMPT, _tool_definition

    prompt_chars = len(SYSTEM_PROMPT) + len(USER_PROMPT)
    tool_chars = len(json.dumps(_tool_definition()))
    records = json.loads((golden / "golden_analyses.json").read_text())["golden_analyses"]
    analyses = [Analysis.model_validate(r).model_dump(mode="json") for r in records]
    output_chars = [len(json.dumps(a)) for a in analyses]
    doc_chars = [len(build_document(a).embedded_text) for a in analyses]
    return {
        "prompt_tokens": prompt_chars / CHARS_PER_TOKEN + tool_chars / CHARS_PER_JSON_TOKEN,
        "output_tokens": statistics.mean(output_chars) / CHARS_PER_JSON_TOKEN,
        "embedding_tokens": statistics.mean(doc_chars) / CHARS_PER_TOKEN,
        "golden_analyses": len(analyses),
    }


TOKEN_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def measure_claude_tokens(folder: Path, golden: Path, count: int = 12) -> dict[str, Any]:
    """Mean tokens per analysis, by kind, as recorded by the analyzer for ``count`` screenshots."""
    import os

    from runtime.config import Settings
    from runtime.domain.images import process_image
    from runtime.providers.anthropic_analyzer import AnthropicAnalyzer
    from tests.fakes.model_server import FakeModelServer

    records = json.loads((golden / "golden_analyses.json").read_text())["golden_analyses"]
    files = sorted(folder.glob("*.jpg"))[:count]
    answers = iter(records * (count // max(1, len(records)) + 1))
    per_call: list[dict[str, int]] = []
    previous = os.environ.get("ANTHROPIC_API_KEY")
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-benchmark"
    try:
        with FakeModelServer(analysis=lambda body: next(answers)) as server:
            analyzer = AnthropicAnalyzer(Settings(anthropic_base_url=server.url))
            for path in files:
                done = process_image(path.read_bytes())
                analysis = next(r for r in done.renditions if r.name == "analysis")
                result = analyzer.analyze(analysis.data, "image/jpeg")
                per_call.append({name: getattr(result, name) for name in TOKEN_FIELDS})
            if server.problems:
                raise SystemExit(f"the fake Messages API refused a request: {server.problems}")
    finally:
        if previous is None:
            os.environ.pop("ANTHROPIC_API_KEY", None)
        else:
            os.environ["ANTHROPIC_API_KEY"] = previous
    mean = {name: statistics.mean(c[name] for c in per_call) for name in TOKEN_FIELDS}
    return {"analyses": len(per_call), "mean": mean, "per_analysis": per_call}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--screenshots", type=Path, default=DATASETS / "screenshots")
    parser.add_argument("--golden", type=Path, default=DATASETS / "golden")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (args.golden / "golden_analyses.json").exists():
        raise SystemExit(f"cost skipped: golden analyses not found at {args.golden} (--golden)")
    images = measure_images(args.screenshots)
    text = measure_text(args.golden)
    sources = {}

    thumbs = load(args.out, "thumbnails")
    compute_s = 0.1
    if thumbs:
        rate = thumbs["sets"][0]["images_per_s_per_core"].get("ours")
        if rate:
            compute_s = 1 / rate
            sources["thumbnail compute"] = f"thumbnails.json: {rate:.1f} images/s on one core"
    api = load(args.out, "api_load")
    api_s = 0.05
    if api:
        ones = [c["p50_ms"] for c in api["cells"] if c["clients"] == 1]
        api_s = statistics.mean(ones) / 1000
        sources["API request"] = f"api_load.json: mean p50 at 1 client {api_s * 1000:.0f} ms"

    claude = measure_claude_tokens(args.screenshots, args.golden)
    n = 1000
    # Per analysis in a batch of n uploaded within the cache's 5 minutes: one cache write, then
    # reads (the sample's first call wrote, the others read the same prefix).
    prefix = max(c["cache_read_input_tokens"] for c in claude["per_analysis"])
    tokens = {
        **claude["mean"],
        "cache_creation_input_tokens": prefix / n,
        "cache_read_input_tokens": prefix * (n - 1) / n,
    }
    durations = {
        "thumbnail": compute_s + ASSUMED["thumbnail_io_s"],
        "analyze": ASSUMED["claude_call_s"] + ASSUMED["analyze_db_s"],
        "embed": ASSUMED["voyage_call_s"] + ASSUMED["embed_db_s"],
        "api": api_s * ASSUMED["api_requests_per_image"],
    }
    invocations = {
        "thumbnail": 1,
        "analyze": 1,
        "embed": 1,
        "api": ASSUMED["api_requests_per_image"],
    }
    lines: list[tuple[str, str, float]] = []
    for name, seconds in durations.items():
        gb = function(name).memory_mb / 1024
        gb_s = seconds * gb * n
        lines.append(
            (
                f"Lambda {name} ({function(name).memory_mb} MB x {seconds:.2f} s)",
                f"{gb_s:,.0f} GB-s x ${PRICES['lambda_arm_gb_s']:.10f}",
                gb_s * PRICES["lambda_arm_gb_s"],
            )
        )
    requests = sum(invocations.values()) * n
    lines.append(
        ("Lambda requests", f"{requests:,.0f} x $0.20/M", requests * PRICES["lambda_request"])
    )
    for label, name, price in (
        ("Claude input tokens, uncached (image + instruction)", "input_tokens", "input"),
        ("Claude input tokens, prompt cache writes", "cache_creation_input_tokens", "cache_write"),
        ("Claude input tokens, prompt cache reads", "cache_read_input_tokens", "cache_read"),
        ("Claude output tokens", "output_tokens", "output"),
    ):
        unit = PRICES[f"claude_sonnet_{price}_token"]
        lines.append(
            (
                label,
                f"{tokens[name] * n:,.0f} ({tokens[name]:,.0f} per analysis) x ${unit * 1e6:.2f}/M",
                tokens[name] * n * unit,
            )
        )
    lines.append(
        (
            "Voyage embedding tokens",
            f"{text['embedding_tokens'] * n:,.0f} x $0.02/M",
            text["embedding_tokens"] * n * PRICES["voyage_35_lite_token"],
        )
    )
    puts, gets = 4 * n, (2 + ASSUMED["thumbnail_views_per_image_month"]) * n
    lines.append(
        ("S3 PUT (original + 3 renditions)", f"{puts:,} x $0.005/1000", puts * PRICES["s3_put"])
    )
    lines.append(
        ("S3 GET (pipeline 2 + views 3)", f"{gets:,} x $0.0004/1000", gets * PRICES["s3_get"])
    )
    gb = (images["original_bytes"] + images["derived_bytes"]) * n / 1e9
    lines.append(("S3 storage, per month", f"{gb:.2f} GB x $0.023", gb * PRICES["s3_gb_month"]))
    events = 3 * n
    lines.append(
        (
            "EventBridge pipeline events",
            f"{events:,} x $1/M",
            events * PRICES["eventbridge_custom_event"],
        )
    )
    lines.append(
        (
            "DynamoDB idempotency (2 writes + 1 read)",
            f"{3 * n:,} requests",
            n * (2 * PRICES["dynamodb_write_request"] + PRICES["dynamodb_read_request"]),
        )
    )
    total = sum(cost for *_, cost in lines)
    cached_prefix = prefix
    cache_tokens = tokens["cache_creation_input_tokens"] + tokens["cache_read_input_tokens"]
    without_cache = (
        total
        - tokens["cache_creation_input_tokens"] * n * PRICES["claude_sonnet_cache_write_token"]
        - tokens["cache_read_input_tokens"] * n * PRICES["claude_sonnet_cache_read_token"]
        + cache_tokens * n * PRICES["claude_sonnet_input_token"]
    )
    rows = [
        [what, basis, f"${cost:.4f}", f"{100 * cost / total:.1f}%"] for what, basis, cost in lines
    ]
    rows.append(["**total per 1,000 images**", "", f"**${total:.2f}**", "100%"])
    markdown = (
        f"### Cost per 1,000 images on AWS ({PRICES_DATE})\n\n"
        + table(["what", "quantity x list price", "USD", "share"], rows)
        + f"\nMeasured: Claude tokens per analysis as the analyzer recorded them for "
        f"{claude['analyses']} screenshots analysed in sequence (the first writes the prompt "
        "cache, the others read it; counted here as one write per 1,000 images, i.e. uploads "
        "less than 5 minutes apart), "
        "rendition and original sizes, search-document length"
        + "".join(f"; {k} ({v})" for k, v in sources.items())
        + ". Assumed (not measurable without accounts): "
        + ", ".join(f"{k} = {v}" for k, v in ASSUMED.items())
        + ". Excluded: fixed monthly costs (RDS, CloudWatch). Tokens are the fake API's "
        "estimates (~4 characters per token), not a tokenizer's.\n"
        "\n**Prompt caching.** The tool schema and system prompt (the cached prefix, "
        f"{cached_prefix:,} tokens) are identical for every image and marked with "
        "`cache_control`; reading them from the cache instead of paying the full input price "
        f"saves ${without_cache - total:.2f} per 1,000 images. The API caches a prefix only "
        "from the model's minimum length on (documented as 1,024 tokens for Claude Sonnet 4.6; "
        "a user reports caching from 2,048 only in practice, anthropics/anthropic-sdk-python "
        "issue 1194: if so, this prefix is not cached and the cost stays "
        f"${without_cache:.2f}; "
        "`usage.cache_read_input_tokens` of the stored analyses shows which holds).\n"
        "\n**Other levers.** Output tokens are now the larger part; the Message Batches API "
        "halves both token prices where a delay of minutes to hours is acceptable (a bulk "
        "import); a smaller analysis derivative (long edge 1,092 instead of 1,568 px) would "
        "roughly halve the image tokens.\n"
    )
    write_results(
        args.out,
        "cost",
        {
            "prices": PRICES,
            "prices_date": PRICES_DATE,
            "assumed": ASSUMED,
            "measured": {
                **images,
                **text,
                "claude_tokens_per_analysis": tokens,
                "claude_tokens_by_analysis": claude["per_analysis"],
                "thumbnail_compute_s": compute_s,
                "api_request_s": api_s,
            },
            "sources": sources,
            "lines": [{"what": w, "basis": b, "usd": c} for w, b, c in lines],
            "total_usd_per_1000_images": round(total, 4),
            "total_usd_without_prompt_cache": round(without_cache, 4),
            "target_usd_per_1000_images": TARGET_USD,
            "meets_target": total <= TARGET_USD,
        },
        markdown,
    )


if __name__ == "__main__":
    main()
