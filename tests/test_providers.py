"""The model providers, through the real SDKs against a local fake of the APIs, and offline.

The Anthropic and Voyage tests point the official SDKs at ``FakeModelServer`` (``base_url``),
which validates every request (auth, model, image, tool schema, embedding parameters) and can
script failures (429, 529, malformed answers). The offline analyzer and embedder run for real.
Tests that need the evaluation data (``../shared/datasets``, or ``$COLLECTIONS_DATASETS``) skip
with a message when it is absent.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from runtime.config import Settings
from runtime.domain.analysis import Analysis, analysis_tool_schema
from runtime.domain.assistant import AssistantFailed, Limits
from runtime.domain.errors import PermanentError, TransientError
from runtime.providers import factory
from runtime.providers.anthropic_analyzer import SYSTEM_PROMPT, AnthropicAnalyzer
from runtime.providers.anthropic_assistant import AnthropicAssistant
from runtime.providers.base import AnalysisResult, Analyzer, Embedder, Reranker, RerankUnavailable
from runtime.providers.voyage_embedder import VoyageEmbedder
from runtime.providers.voyage_reranker import VoyageReranker
from tests.conftest import DATASETS, dataset, unreachable_toolbox
from tests.fakes.model_server import (
    DEFAULT_ANALYSIS,
    FakeModelServer,
    RecordedRequest,
    hashed_embedding,
)

ANTHROPIC_KEY = "sk-ant-test-0123456789"
VOYAGE_KEY = "pa-test-0123456789"
MESSAGES = "/v1/messages"
EMBEDDINGS = "/v1/embeddings"
RERANK = "/v1/rerank"


def jpeg(width: int = 1000, height: int = 1568, color: str = "white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def derivative(path: Path, max_edge: int = 1568) -> bytes:
    """What the thumbnail stage hands to the analyzer: long edge <= 1568, JPEG."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((max_edge, max_edge))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture
def server():
    with FakeModelServer(api_key=None) as fake:
        yield fake


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("VOYAGE_API_KEY", VOYAGE_KEY)
    for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "VOYAGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def anthropic_analyzer(server: FakeModelServer, **settings: object) -> AnthropicAnalyzer:
    return AnthropicAnalyzer(Settings(anthropic_base_url=server.url, **settings))


def voyage_embedder(server: FakeModelServer, **kwargs: object) -> VoyageEmbedder:
    dimension = kwargs.pop("embedding_dimension", None)
    settings = Settings(voyage_base_url=server.voyage_url, embedding_dimension=dimension)
    return VoyageEmbedder(settings, backoff_s=0.01, **kwargs)


# -- the analysis schema ----------------------------------------------------------------------


def test_every_golden_and_reference_analysis_validates() -> None:
    golden = json.loads(dataset("golden", "golden_analyses.json").read_text())
    records = golden["golden_analyses"]
    reference_path = DATASETS / "screenshots" / "reference_analyses.json"
    if reference_path.exists():
        records += [
            i["reference_analysis"] for i in json.loads(reference_path.read_text())["items"]
        ]
    assert len(records) >= 55
    for record in records:
        analysis = Analysis.model_validate(record)
        assert analysis.category == record["category"]
        assert analysis.headline == record["headline"].strip()
        assert len(analysis.image_details.extracted_text) <= len(
            record["image_details"]["extracted_text"]
        )


def test_analysis_tolerates_sloppy_but_harmless_output() -> None:
    analysis = Analysis.model_validate(
        {
            "category": " Travel ",
            "headline": "Kyoto in two days",
            "summary": None,
            "subcategories": None,
            "media_metadata": None,
            "image_details": {"objects": "a temple", "themes": [None, " ", "travel"]},
            "unknown": "ignored",
        }
    )
    assert analysis.category == "Travel"
    assert analysis.summary == ""
    assert analysis.subcategories == []
    assert analysis.media_metadata.hashtags == []
    assert analysis.image_details.objects == ["a temple"]
    assert analysis.image_details.themes == ["travel"]


@pytest.mark.parametrize(
    "bad",
    [
        {"headline": "no category"},
        {"category": "", "headline": "empty category"},
        {"category": "Travel", "headline": "x" * 141},
        {"category": "Travel"},
        {"category": "Travel", "headline": "h", "subcategories": [1, {"a": 2}]},
    ],
)
def test_analysis_rejects_what_the_pipeline_cannot_use(bad: dict) -> None:
    with pytest.raises(ValueError):
        Analysis.model_validate(bad)


def test_tool_schema_is_self_contained_and_asks_for_every_field() -> None:
    schema = analysis_tool_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert schema["type"] == "object"
    assert set(schema["required"]) == set(Analysis.model_fields)
    assert schema["properties"]["headline"]["maxLength"] == 140
    details = schema["properties"]["image_details"]
    assert details["type"] == "object"
    assert "extracted_text" in details["required"]
    assert details["properties"]["likely_source"]["type"] == ["string", "null"]
    # the canned answer of the fake satisfies the model it is checked against
    Analysis.model_validate(DEFAULT_ANALYSIS)


# -- Anthropic through the SDK ----------------------------------------------------------------


def test_anthropic_analysis_succeeds_and_sends_a_valid_request(
    server: FakeModelServer, keys: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    analyzer = anthropic_analyzer(server)
    assert isinstance(analyzer, Analyzer)
    result = analyzer.analyze(jpeg(1000, 1568), "image/jpeg")

    assert isinstance(result, AnalysisResult)
    assert result.provider == "anthropic"
    assert result.model == "claude-sonnet-4-6"
    assert result.analysis == Analysis.model_validate(DEFAULT_ANALYSIS)
    assert result.input_tokens > 1000 and result.output_tokens > 50  # from the answer's usage
    assert result.latency_ms >= 0

    assert server.problems == []
    assert server.count(MESSAGES) == 1
    request = server.requests_to(MESSAGES)[0]
    assert request.image_size == (1000, 1568)
    body = request.body
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == Settings().anthropic_max_tokens
    assert body["tools"][0]["name"] == "record_analysis"
    assert body["tools"][0]["input_schema"] == analysis_tool_schema()
    assert body["tool_choice"] == {"type": "tool", "name": "record_analysis"}
    image_block = body["messages"][0]["content"][0]
    assert image_block["source"]["media_type"] == "image/jpeg"
    auth = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    assert ANTHROPIC_KEY in auth
    assert ANTHROPIC_KEY not in caplog.text


def test_anthropic_prompt_and_tool_schema_are_cached_across_images(
    server: FakeModelServer, keys: None
) -> None:
    analyzer = anthropic_analyzer(server)
    first = analyzer.analyze(jpeg(1000, 1568), "image/jpeg")
    second = analyzer.analyze(jpeg(800, 1200, "black"), "image/jpeg")
    assert server.problems == []

    body = server.requests_to(MESSAGES)[0].body
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]
    # The first image writes the shared prefix (tool schema + system prompt), the second reads
    # it; the image and the instruction after the breakpoint are never cached.
    prefix = first.cache_creation_input_tokens
    assert prefix > 1024 and first.cache_read_input_tokens == 0
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, prefix)
    image_tokens = math.ceil(1000 * 1568 / 750), math.ceil(800 * 1200 / 750)
    assert first.input_tokens - second.input_tokens == image_tokens[0] - image_tokens[1]
    assert second.input_tokens < image_tokens[1] + 100


def test_the_fake_caches_nothing_below_the_models_minimum(
    server: FakeModelServer, keys: None
) -> None:
    server.anthropic_model = "claude-haiku-4-5"  # minimum cacheable prefix: 4,096 tokens
    analyzer = anthropic_analyzer(server, anthropic_model="claude-haiku-4-5")
    results = [analyzer.analyze(jpeg(), "image/jpeg") for _ in range(2)]
    assert server.problems == []
    assert all(r.cache_creation_input_tokens == r.cache_read_input_tokens == 0 for r in results)
    assert results[0].input_tokens > 1024 + math.ceil(1000 * 1568 / 750)


@pytest.mark.parametrize(
    "control", [{"type": "persistent"}, {"type": "ephemeral", "ttl": "1d"}, "ephemeral"]
)
def test_the_fake_rejects_a_malformed_cache_control(
    server: FakeModelServer, keys: None, control: object
) -> None:
    analyzer = anthropic_analyzer(server)
    with (
        patch(
            "runtime.providers.anthropic_analyzer._system_blocks",
            return_value=[{"type": "text", "text": SYSTEM_PROMPT, "cache_control": control}],
        ),
        pytest.raises(PermanentError),
    ):
        analyzer.analyze(jpeg(), "image/jpeg")
    assert any("cache_control" in problem for problem in server.problems)


def test_anthropic_analysis_accepts_png(server: FakeModelServer, keys: None) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), "navy").save(buffer, "PNG")
    anthropic_analyzer(server).analyze(buffer.getvalue(), "image/png")
    assert server.problems == []
    assert server.requests_to(MESSAGES)[0].image_size == (400, 300)


def test_the_fake_rejects_an_oversized_image(server: FakeModelServer, keys: None) -> None:
    with pytest.raises(PermanentError) as failure:
        anthropic_analyzer(server).analyze(jpeg(1600, 900), "image/jpeg")
    assert failure.value.reason == "model_request_rejected"
    assert any("long edge 1600" in p for p in server.problems)


@pytest.mark.parametrize(
    ("status", "waits"), [(429, (0.01, 0.01)), (529, (0.01, 0.01)), (500, (0.1, 8.0))]
)
def test_anthropic_retries_throttling_and_overload(
    server: FakeModelServer,
    keys: None,
    status: int,
    waits: tuple[float, float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.script(MESSAGES, [status])
    caplog.set_level(logging.INFO, logger="anthropic")
    result = anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert result.analysis.category == "Travel"
    assert server.count(MESSAGES) == 2
    retried = server.requests_to(MESSAGES)[1]
    assert retried.headers.get("x-stainless-retry-count") == "1"
    assert server.problems == []
    # The wait the SDK chose before its retry: the server's retry-after-ms (10) for 429 and 529,
    # its own backoff (between its initial and its longest delay) for a 500.
    retry = re.compile(r"Retrying request to \S+ in ([0-9.]+) seconds")
    slept = [float(seconds) for seconds in retry.findall(caplog.text)]
    assert len(slept) == 1 and waits[0] <= slept[0] <= waits[1], caplog.text


def test_anthropic_persistent_throttling_is_transient(server: FakeModelServer, keys: None) -> None:
    server.script(MESSAGES, [429, 429, 429])
    with pytest.raises(TransientError, match="429"):
        anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert server.count(MESSAGES) == 3  # the first call and the SDK's two retries


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "model_request_rejected"), (401, "model_auth_failed"), (403, "model_auth_failed")],
)
def test_anthropic_client_errors_are_permanent_and_not_retried(
    server: FakeModelServer, keys: None, status: int, reason: str
) -> None:
    server.script(MESSAGES, [status])
    with pytest.raises(PermanentError) as failure:
        anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert failure.value.reason == reason
    assert failure.value.stage == "analyze"
    assert server.count(MESSAGES) == 1


def test_anthropic_malformed_twice_is_permanent(server: FakeModelServer, keys: None) -> None:
    server.script(MESSAGES, ["malformed", "malformed"])
    with pytest.raises(PermanentError) as failure:
        anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert failure.value.reason == "malformed_model_output"
    assert failure.value.stage == "analyze"
    assert "headline" in failure.value.detail
    assert server.count(MESSAGES) == 2
    assert server.problems == []


def test_anthropic_malformed_once_is_retried(server: FakeModelServer, keys: None) -> None:
    server.script(MESSAGES, ["malformed"])
    result = anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert result.analysis == Analysis.model_validate(DEFAULT_ANALYSIS)
    assert server.count(MESSAGES) == 2
    assert server.problems == []


def test_anthropic_answer_without_the_tool_is_retried_and_tokens_add_up(
    server: FakeModelServer, keys: None
) -> None:
    single = anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    server.script(MESSAGES, ["text_only"])
    double = anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert server.count(MESSAGES) == 3
    assert double.input_tokens == 2 * single.input_tokens  # both calls are paid for


def test_anthropic_empty_headline_is_malformed(server: FakeModelServer, keys: None) -> None:
    empty = {**DEFAULT_ANALYSIS, "headline": ""}
    server.script(MESSAGES, [empty, empty])
    with pytest.raises(PermanentError, match="headline is empty"):
        anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")


def test_anthropic_timeout_is_transient(server: FakeModelServer, keys: None) -> None:
    server.script(MESSAGES, [("sleep", 2.0)])
    analyzer = AnthropicAnalyzer(
        Settings(anthropic_base_url=server.url, anthropic_timeout_s=0.3), max_retries=0
    )
    with pytest.raises(TransientError):
        analyzer.analyze(jpeg(), "image/jpeg")


def test_anthropic_unreachable_is_transient(keys: None) -> None:
    with FakeModelServer() as gone:
        url = gone.url
    analyzer = AnthropicAnalyzer(Settings(anthropic_base_url=url), max_retries=0)
    with pytest.raises(TransientError):
        analyzer.analyze(jpeg(), "image/jpeg")


def test_anthropic_without_a_key_fails_permanently(server: FakeModelServer, no_keys: None) -> None:
    with pytest.raises(PermanentError) as failure:
        anthropic_analyzer(server).analyze(jpeg(), "image/jpeg")
    assert failure.value.reason == "model_auth_failed"
    assert server.count(MESSAGES) == 0


@pytest.mark.parametrize("content_type", ["image/heic", "application/pdf", ""])
def test_anthropic_rejects_unsupported_media_types(
    server: FakeModelServer, keys: None, content_type: str
) -> None:
    with pytest.raises(PermanentError) as failure:
        anthropic_analyzer(server).analyze(jpeg(), content_type)
    assert failure.value.reason == "unsupported_media_type"
    assert server.count(MESSAGES) == 0


# -- Voyage through the SDK -------------------------------------------------------------------


def test_voyage_documents_and_queries(server: FakeModelServer, keys: None) -> None:
    embedder = voyage_embedder(server)
    assert isinstance(embedder, Embedder)
    assert (embedder.provider, embedder.model, embedder.dimension) == (
        "voyage",
        "voyage-3.5-lite",
        1024,
    )
    texts = ["ramen in Fukuoka", "hiking near Kyoto", "resume tips"]
    documents = embedder.embed_documents(texts)
    query = embedder.embed_query("where to eat ramen")

    assert [len(v) for v in documents] == [1024, 1024, 1024]
    assert documents == [pytest.approx(hashed_embedding(t, 1024)) for t in texts]
    assert query == pytest.approx(hashed_embedding("where to eat ramen", 1024))
    assert server.problems == []
    bodies = [r.body for r in server.requests_to(EMBEDDINGS)]
    assert [b["input_type"] for b in bodies] == ["document", "query"]
    assert bodies[0]["input"] == texts
    assert all(b["model"] == "voyage-3.5-lite" and b["output_dimension"] == 1024 for b in bodies)
    request = server.requests_to(EMBEDDINGS)[0]
    assert request.headers["authorization"] == f"Bearer {VOYAGE_KEY}"


def test_voyage_dimension_and_batching(server: FakeModelServer, keys: None) -> None:
    embedder = voyage_embedder(server, embedding_dimension=256, batch_size=2)
    vectors = embedder.embed_documents([f"document {i}" for i in range(5)])
    assert [len(v) for v in vectors] == [256] * 5
    assert vectors[4] == pytest.approx(hashed_embedding("document 4", 256))
    assert server.count(EMBEDDINGS) == 3
    assert all(r.body["output_dimension"] == 256 for r in server.requests_to(EMBEDDINGS))
    assert embedder.embed_documents([]) == []
    assert server.problems == []


def test_voyage_retries_throttling(server: FakeModelServer, keys: None) -> None:
    server.script(EMBEDDINGS, [429])
    vector = voyage_embedder(server).embed_query("quiet cafes in Seoul")
    assert len(vector) == 1024
    assert server.count(EMBEDDINGS) == 2
    assert server.problems == []


def test_voyage_retries_server_errors_then_gives_up(server: FakeModelServer, keys: None) -> None:
    server.script(EMBEDDINGS, [500, 503])
    assert len(voyage_embedder(server).embed_query("x")) == 1024
    assert server.count(EMBEDDINGS) == 3
    server.reset()
    server.script(EMBEDDINGS, [503, 503, 503])
    with pytest.raises(TransientError, match="503"):
        voyage_embedder(server).embed_query("x")
    assert server.count(EMBEDDINGS) == 3


@pytest.mark.parametrize(
    ("status", "reason"),
    [(401, "embedding_auth_failed"), (400, "embedding_request_rejected")],
)
def test_voyage_client_errors_are_permanent(
    server: FakeModelServer, keys: None, status: int, reason: str
) -> None:
    server.script(EMBEDDINGS, [status])
    with pytest.raises(PermanentError) as failure:
        voyage_embedder(server).embed_documents(["a"])
    assert failure.value.reason == reason
    assert failure.value.stage == "embed"
    assert server.count(EMBEDDINGS) == 1


def test_voyage_wrong_dimension_is_permanent(server: FakeModelServer, keys: None) -> None:
    server.script(EMBEDDINGS, ["malformed"])
    with pytest.raises(PermanentError) as failure:
        voyage_embedder(server).embed_query("x")
    assert failure.value.reason == "embedding_dimension_mismatch"


# -- Voyage reranker through the SDK ----------------------------------------------------------


def voyage_reranker(server: FakeModelServer, **settings: object) -> VoyageReranker:
    return VoyageReranker(Settings(voyage_base_url=server.voyage_url, **settings))


def test_voyage_rerank_request_and_order(server: FakeModelServer, keys: None) -> None:
    reranker = voyage_reranker(server)
    assert isinstance(reranker, Reranker)
    assert (reranker.provider, reranker.model) == ("voyage", "rerank-2.5")
    documents = ["hiking near Kyoto", "Ichiran ramen in Fukuoka at night", "ramen museum"]
    ranked = reranker.rerank("late night ramen Fukuoka", documents, top_k=2)

    # The fake scores by the share of the query's words a document holds: 3/4, then 1/4.
    assert ranked == [(1, 0.75), (2, 0.25)]
    assert server.problems == []
    (request,) = server.requests_to(RERANK)
    assert request.headers["authorization"] == f"Bearer {VOYAGE_KEY}"
    assert request.body["model"] == "rerank-2.5"
    assert request.body["query"] == "late night ramen Fukuoka"
    assert request.body["documents"] == documents
    assert request.body["top_k"] == 2
    assert reranker.total_tokens > 0


def test_voyage_rerank_model_is_configurable(keys: None) -> None:
    with FakeModelServer(voyage_rerank_model="rerank-2.5-lite") as server:
        ranked = voyage_reranker(server, voyage_rerank_model="rerank-2.5-lite").rerank(
            "ramen", ["ramen"], top_k=5
        )
        assert ranked == [(0, 1.0)]
        assert server.requests_to(RERANK)[0].body["top_k"] == 1  # never more than documents
        assert server.problems == []


@pytest.mark.parametrize("scripted", [401, 429, 500, "malformed"])
def test_voyage_rerank_failures_are_unavailable(
    server: FakeModelServer, keys: None, scripted: object
) -> None:
    server.script(RERANK, [scripted])
    with pytest.raises(RerankUnavailable):
        voyage_reranker(server).rerank("ramen", ["ramen", "onsen"], top_k=2)
    assert server.count(RERANK) == 1  # one attempt: a user is waiting


def test_voyage_rerank_without_key_is_unavailable(server: FakeModelServer, no_keys: None) -> None:
    with pytest.raises(RerankUnavailable):
        voyage_reranker(server).rerank("ramen", ["ramen"], top_k=1)
    assert server.count(RERANK) == 0


# -- factory ----------------------------------------------------------------------------------


@pytest.fixture
def fresh_factory() -> Iterator[None]:
    factory.reset()
    yield
    factory.reset()


def test_factory_auto_uses_local_providers_without_keys(no_keys: None, fresh_factory: None) -> None:
    settings = Settings()
    assert factory.get_analyzer(settings).provider == "local"
    assert factory.get_embedder(settings).provider == "local"
    assert factory.embedding_dimension(settings) == 384
    assert factory.get_analyzer(settings) is factory.get_analyzer(Settings())
    assert factory.get_reranker(settings) is None


def test_factory_auto_uses_real_providers_with_keys(keys: None, fresh_factory: None) -> None:
    settings = Settings()
    analyzer, embedder = factory.get_analyzer(settings), factory.get_embedder(settings)
    assert (analyzer.provider, analyzer.model) == ("anthropic", "claude-sonnet-4-6")
    assert (embedder.provider, embedder.dimension) == ("voyage", 1024)
    assert factory.embedding_dimension(settings) == 1024
    assert factory.get_embedder(Settings()) is embedder
    assert factory.get_analyzer(Settings(analyzer="local")).provider == "local"
    reranker = factory.get_reranker(settings)
    assert reranker is not None and (reranker.provider, reranker.model) == ("voyage", "rerank-2.5")
    assert factory.get_reranker(Settings()) is reranker
    assert factory.get_reranker(Settings(reranker="none")) is None


def test_factory_counts_a_configured_ssm_parameter_as_a_key(no_keys: None) -> None:
    settings = Settings(
        anthropic_api_key_param="/collections/dev/anthropic-api-key",
        voyage_api_key_param="/collections/dev/voyage-api-key",
    )
    assert factory.analyzer_kind(settings) == "anthropic"
    assert factory.embedder_kind(settings) == "voyage"
    assert factory.embedding_dimension(settings) == 1024
    assert factory.embedding_dimension(Settings(embedder="voyage", embedding_dimension=512)) == 512
    assert factory.embedding_dimension(Settings(embedder="local")) == 384
    with pytest.raises(ValueError, match="384"):
        factory.get_embedder(Settings(embedder="local", embedding_dimension=1024))
    mpnet = Settings(embedder="local", local_embedding_model="all-mpnet-base-v2")
    assert factory.embedding_dimension(mpnet) == 768
    with pytest.raises(ValueError, match="768"):
        factory.get_embedder(mpnet.model_copy(update={"embedding_dimension": 384}))


def test_factory_serves_the_configured_local_model(no_keys: None, fresh_factory: None) -> None:
    mpnet = factory.get_embedder(Settings(local_embedding_model="all-mpnet-base-v2"))
    minilm = factory.get_embedder(Settings())
    assert (mpnet.provider, mpnet.model, mpnet.dimension) == ("local", "all-mpnet-base-v2", 768)
    assert (minilm.model, minilm.dimension) == ("all-MiniLM-L6-v2", 384)
    with pytest.raises(ValueError):
        Settings(local_embedding_model="bert-base-uncased")


def test_embedding_dimension_loads_no_model_or_sdk() -> None:
    code = (
        "import sys\n"
        "from runtime.config import Settings\n"
        "from runtime.providers.factory import embedding_dimension, get_analyzer, get_embedder\n"
        "s = Settings(analyzer='local', embedder='local')\n"
        "assert embedding_dimension(s) == 384\n"
        "get_analyzer(s); get_embedder(s)\n"
        "heavy = {'anthropic', 'voyageai', 'rapidocr', 'onnxruntime', 'safetensors',\n"
        "         'tokenizers'}\n"
        "loaded = sorted(heavy & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# -- SDK clients: made once, forgotten after an auth failure ----------------------------------


def test_a_lazy_client_is_made_once_for_concurrent_callers_and_again_after_a_drop() -> None:
    from runtime.providers.lazy_client import LazyClient

    made: list[object] = []
    asking = threading.Barrier(8)

    def create() -> object:
        time.sleep(0.05)  # a slow key read: every racing caller arrives while it runs
        made.append(object())
        return made[-1]

    holder = LazyClient(create)
    got: list[object] = []

    def ask() -> None:
        asking.wait()
        got.append(holder.get())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and got == made * 8
    holder.drop()
    assert holder.get() is made[1] and len(made) == 2
    given = object()
    assert LazyClient(create, given).get() is given and len(made) == 2


def test_a_client_that_cannot_be_made_is_tried_again_on_the_next_call() -> None:
    from runtime.providers.lazy_client import LazyClient

    outcomes: list[object] = [TransientError("key store unreachable"), "client"]

    def create() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    holder = LazyClient(create)
    with pytest.raises(TransientError):
        holder.get()
    assert holder.get() == "client"


def test_a_rotated_key_is_read_again_after_an_auth_failure(
    server: FakeModelServer, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer, embedder = anthropic_analyzer(server), voyage_embedder(server)
    assistant = AnthropicAssistant(Settings(anthropic_base_url=server.url))
    # A toolbox whose tools would fail the test if called: the scripted model answers directly.
    toolbox = unreachable_toolbox()
    limits = Limits(max_tool_rounds=2, max_tokens=10_000, max_output_tokens=500)
    server.script(MESSAGES, [401, 401, {"answer": "Nothing to look up."}])
    server.script(EMBEDDINGS, [401])
    with pytest.raises(PermanentError):
        analyzer.analyze(jpeg(), "image/jpeg")
    with pytest.raises(AssistantFailed) as refused:
        assistant.answer("what did I save?", [], toolbox, limits)
    assert refused.value.reason == "assistant_auth_failed"
    assert "API key was refused" in refused.value.message
    with pytest.raises(PermanentError):
        embedder.embed_query("x")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-rotated-0123456789")
    monkeypatch.setenv("VOYAGE_API_KEY", "pa-rotated-0123456789")
    assert assistant.answer("what did I save?", [], toolbox, limits).text.startswith("Nothing")
    analyzer.analyze(jpeg(), "image/jpeg")
    embedder.embed_query("x")
    assert [sent_key(r) for r in server.requests_to(MESSAGES)] == [
        ANTHROPIC_KEY,
        ANTHROPIC_KEY,
        "sk-ant-rotated-0123456789",
        "sk-ant-rotated-0123456789",
    ]
    assert [sent_key(r) for r in server.requests_to(EMBEDDINGS)] == [
        VOYAGE_KEY,
        "pa-rotated-0123456789",
    ]


def sent_key(request: RecordedRequest) -> str | None:
    """The API key a request carried (``x-api-key`` or ``Authorization: Bearer``)."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    return request.headers.get("x-api-key") or bearer or None


# -- the offline embedder ---------------------------------------------------------------------


def test_local_embedder_matches_published_similarities() -> None:
    """sentence-transformers' documented example for all-MiniLM-L6-v2 gives 0.6660, 0.1046 and
    0.1411 for these pairs; the numpy forward pass must reproduce them."""
    from runtime.providers.local_embedder import LocalEmbedder

    embedder = LocalEmbedder()
    assert (embedder.provider, embedder.model, embedder.dimension) == (
        "local",
        "all-MiniLM-L6-v2",
        384,
    )
    vectors = np.array(
        embedder.embed_documents(
            ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
        )
    )
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=2e-3)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=2e-3)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=2e-3)


def test_local_embedder_semantics_and_padding_invariance() -> None:
    from runtime.providers.local_embedder import LocalEmbedder

    embedder = LocalEmbedder(batch_size=4)
    dog = np.array(embedder.embed_query("a photo of a dog on the beach"))
    puppy, tax = (
        np.array(v)
        for v in embedder.embed_documents(
            ["puppy playing in the sand", "quarterly tax filing deadline"]
        )
    )
    assert dog @ puppy > 0.5
    assert dog @ tax < 0.2
    # A short text batched with a long one (so padded) embeds as it does alone.
    long_text = "ramen " * 300
    batched = embedder.embed_documents(["puppy playing in the sand", long_text])
    assert np.array(batched[0]) == pytest.approx(puppy, abs=1e-5)
    assert embedder.embed_documents([]) == []


def test_mpnet_embedder_tells_paraphrases_from_unrelated_text() -> None:
    """all-mpnet-base-v2's numpy forward pass. Paraphrase pairs score >= 0.6 and unrelated ones
    <= 0.1 only with MPNet's relative-position bias applied as the model was trained (measured:
    without it, or with its direction reversed, a paraphrase pair scores 0.48-0.53 and an
    unrelated pair up to 0.64)."""
    from runtime.providers.mpnet_embedder import MPNetEmbedder

    embedder = MPNetEmbedder(batch_size=4)
    assert (embedder.provider, embedder.model, embedder.dimension) == (
        "local",
        "all-mpnet-base-v2",
        768,
    )
    texts = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
        "a cheap hotel near the station",
        "budget accommodation close to the train terminal",
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
    ]
    vectors = np.array(embedder.embed_documents(texts))
    assert vectors.shape == (8, 768)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0] * 8, abs=1e-5)
    similarity = vectors @ vectors.T
    for a, b in ((0, 1), (3, 4), (5, 6)):
        assert similarity[a, b] >= 0.6, (texts[a], texts[b], similarity[a, b])
    for a, b in ((0, 2), (1, 2), (3, 5)):
        assert similarity[a, b] <= 0.1, (texts[a], texts[b], similarity[a, b])
    assert similarity[5, 6] > similarity[5, 7] + 0.3
    # A query embeds as the same text among documents; padding changes nothing.
    assert np.array(embedder.embed_query(texts[3])) == pytest.approx(vectors[3], abs=1e-5)
    batched = embedder.embed_documents([texts[3], "ramen " * 500])
    assert np.array(batched[0]) == pytest.approx(vectors[3], abs=1e-5)
    assert embedder.embed_documents([]) == []


def test_mpnet_model_files_are_unpacked_once_and_checked(tmp_path: Path) -> None:
    from runtime.providers import mpnet_embedder

    first = mpnet_embedder.model_dir(tmp_path)
    assert sorted(p.name for p in first.iterdir()) == sorted(mpnet_embedder.NEEDED_FILES)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert mpnet_embedder.model_dir(tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["all-mpnet-base-v2"]  # no scratch left

    other = tmp_path / "tampered"
    digests = dict(mpnet_embedder.NEEDED_FILES, **{"tokenizer.json": "0" * 64})
    with (
        patch.object(mpnet_embedder, "NEEDED_FILES", digests),
        pytest.raises(mpnet_embedder.ModelFilesMismatch, match=r"tokenizer\.json"),
    ):
        mpnet_embedder.model_dir(other)
    assert not (other / "all-mpnet-base-v2").exists()
    assert list(other.iterdir()) == []


def test_mpnet_relative_buckets_follow_the_model() -> None:
    from runtime.providers.mpnet_embedder import relative_buckets

    buckets = relative_buckets(300)
    # Keys before the query use buckets 0-15, keys after it 16-31; exact up to 7 apart.
    assert buckets[10, 10] == 0
    assert [buckets[10, 10 - d] for d in range(1, 8)] == list(range(1, 8))
    assert [buckets[10, 10 + d] for d in range(1, 8)] == list(range(17, 24))
    # Logarithmic beyond, the last bucket from 128 apart on.
    assert buckets[200, 200 - 8] == 8 and buckets[200, 200 - 127] == 15
    assert buckets[0, 128] == 31 and buckets[0, 299] == 31
    assert bool((np.diff(buckets[150, :150][::-1]) >= 0).all())


def test_local_embedder_embeds_a_batch_of_long_documents_as_one_by_one() -> None:
    """55 documents of 200 words in one call: one unit vector each, the same as each document
    embedded alone. How fast is measured by the pipeline benchmark, not here."""
    from runtime.providers.local_embedder import LocalEmbedder

    words = [
        "a",
        "day",
        "trip",
        "from",
        "Tokyo",
        "to",
        "Kamakura",
        "with",
        "temples",
        "and",
        "food",
    ]
    documents = [" ".join(words[(i + j) % len(words)] for j in range(200)) for i in range(55)]
    embedder = LocalEmbedder()
    vectors = np.array(embedder.embed_documents(documents))
    assert vectors.shape == (55, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0] * 55, abs=1e-5)
    for n in (0, 54):
        assert vectors[n] == pytest.approx(embedder.embed_documents([documents[n]])[0], abs=1e-5)


# -- the offline analyzer ---------------------------------------------------------------------


def test_local_analyzer_reads_drawn_text() -> None:
    from runtime.providers.local_analyzer import LocalAnalyzer

    image = Image.new("RGB", (900, 1400), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 120), "Tokyo Ramen Guide", font=ImageFont.load_default(size=64), fill="black")
    body = ImageFont.load_default(size=40)
    draw.text((60, 300), "Best ramen in Shinjuku $12", font=body, fill="black")
    draw.text((60, 400), "Open until 2am, cash only", font=body, fill="black")
    draw.text((60, 520), "#ramen #tokyotravel @noodlefan", font=body, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)

    analyzer = LocalAnalyzer()
    assert isinstance(analyzer, Analyzer)
    result = analyzer.analyze(buffer.getvalue(), "image/jpeg")
    analysis = result.analysis

    assert (result.provider, result.model) == ("local", "local-ocr-1")
    assert (result.input_tokens, result.output_tokens) == (0, 0)
    text = " ".join(analysis.image_details.extracted_text).lower()
    assert "ramen guide" in text and "shinjuku" in text
    assert analysis.headline.lower() == "tokyo ramen guide"
    assert "#ramen" in analysis.media_metadata.hashtags
    assert "@noodlefan" in analysis.media_metadata.tagged_accounts
    assert analysis.category == "Food"
    assert "Tokyo" in analysis.media_metadata.location_tags
    assert "price label" in analysis.image_details.objects
    assert "local OCR" in analysis.summary


def test_local_headline_skips_navigation_bars_and_caption_fragments() -> None:
    from runtime.providers.local_analyzer import TextLine, classify, pick_headline

    def line(text: str, top: float, height: float) -> TextLine:
        return TextLine(text, 0.95, 40, top, 40 + 20 * len(text), top + height)

    # A TikTok screen as OCR reads it: the navigation bar (spaces lost, an icon read as "TEM")
    # is tall and at the top; a caption fragment is as tall as the title.
    lines = [
        line("TEM ExploreFollowing Shop ForYou", 60, 44),
        line("BUT IT WAS", 300, 40),
        line("to admire its stunning", 360, 40),
        line("Shikisai no Oka", 420, 40),
        line("rainbow flower fields", 470, 40),
    ]
    assert pick_headline(lines, 1280) == "Shikisai no Oka rainbow flower fields"
    assert pick_headline(lines[:1], 1280) == ""  # navigation only: no headline from it
    # Named places make a screenshot about travel unless another topic clearly dominates.
    assert classify("Nakameguro, Tokyo: Lowkey Cafe")[0] == "Travel"
    assert classify("Tokyo Ramen Guide, best ramen, ramen #ramen")[0] == "Food"


def test_ocr_engine_uses_the_models_in_the_wheel_and_never_downloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rapidocr.utils import download_file

    from runtime.providers import local_analyzer

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("RapidOCR tried to download a model")

    monkeypatch.setattr(download_file.DownloadFile, "run", classmethod(no_download))
    monkeypatch.setattr(download_file.DownloadFile, "_make_http_request", no_download)
    engine = local_analyzer._create_engine()
    result = engine(Image.new("RGB", (200, 100), "white"))
    assert not result.txts
    assert Path(str(engine.cfg.Rec.model_path)).name == "PP-OCRv6_rec_small.onnx"


@pytest.mark.parametrize(("size", "color"), [((1000, 1500), "white"), ((64, 64), "black")])
def test_local_analyzer_blank_image_is_uncategorized(size: tuple[int, int], color: str) -> None:
    from runtime.providers.local_analyzer import LocalAnalyzer

    result = LocalAnalyzer().analyze(jpeg(*size, color=color), "image/jpeg")
    analysis = Analysis.model_validate(result.analysis.model_dump())
    assert analysis.category == "uncategorized"
    assert analysis.image_details.extracted_text == []
    assert analysis.headline and len(analysis.headline) <= 140
    assert analysis.image_details.vibes


def test_local_analyzer_rejects_bytes_that_are_not_an_image() -> None:
    from runtime.providers.local_analyzer import LocalAnalyzer

    with pytest.raises(PermanentError) as failure:
        LocalAnalyzer().analyze(b"definitely not a jpeg", "image/jpeg")
    assert failure.value.reason == "invalid_image"
    with pytest.raises(PermanentError):
        LocalAnalyzer().analyze(b"", "image/jpeg")


@pytest.mark.dataset
def test_local_analyzer_on_a_real_screenshot() -> None:
    from runtime.providers.local_analyzer import LocalAnalyzer

    folder = dataset("screenshots")
    path = sorted(folder.glob("*.jpg"))[0]
    data = derivative(path)
    analyzer = LocalAnalyzer()
    result = analyzer.analyze(data, "image/jpeg")
    analysis = result.analysis
    lines = analysis.image_details.extracted_text
    print(f"\nlocal analyzer on {path.name}: {len(lines)} lines in {result.latency_ms} ms")
    assert len(lines) >= 5
    assert sum(len(line) for line in lines) >= 100
    assert 0 < len(analysis.headline) <= 140
    assert analysis.summary
