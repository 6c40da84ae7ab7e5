"""A local stand-in for the Anthropic Messages API and the Voyage AI embeddings and rerank APIs.

The real SDKs are pointed at it with ``base_url`` (``http://127.0.0.1:PORT`` for Anthropic,
``http://127.0.0.1:PORT/v1`` for Voyage). It validates every request the way the real APIs would
reject it (auth headers, model, message shape, the image itself, the forced tool, embedding
parameters), records it, and answers with realistic JSON:

    with FakeModelServer() as server:
        server.script("/v1/messages", [429, "malformed"])   # then normal answers
        ...
        assert server.problems == []
        assert server.count("/v1/messages") == 3

Scripted items, served in order before the normal answer, per path:
- an ``int`` HTTP status: an error body like the API's (Anthropic ``{"type": "error", ...}``,
  Voyage ``{"detail": ...}``); 429 and 529 carry ``retry-after`` / ``retry-after-ms`` headers;
- ``"malformed"``: for messages, a ``tool_use`` whose input violates the schema (no category,
  a 300-character headline); for embeddings, vectors of the wrong dimension; for rerank, an
  index that names no document;
- ``"text_only"``: for messages, a text answer without the tool call (``stop_reason`` end_turn);
- a ``dict``: for messages, the tool input to answer with (valid or not);
- ``("sleep", seconds)``: wait, then answer normally (to provoke client timeouts).

A problem found in a request makes the server answer 400 (as the API would) and is appended to
``server.problems``, so a test can assert that the client sent only valid requests.

Prompt caching is emulated as the API documents it: ``cache_control`` breakpoints (at most 4,
``{"type": "ephemeral"}`` with an optional ``ttl`` of ``5m`` or ``1h``) on tools, system text
blocks or message blocks; the prefix up to the last breakpoint (tools, then system, then
messages) is cached when it reaches the model's minimum cacheable length; the first request
writes it (``cache_creation_input_tokens``), later identical prefixes within the TTL read it
(``cache_read_input_tokens``), and ``input_tokens`` counts only the uncached rest. Tokens are
estimated at ~4 characters each (images: width x height / 750).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MESSAGES_PATH = "/v1/messages"
EMBEDDINGS_PATH = "/v1/embeddings"
WEB_SEARCH_PATH = "/search"  # Tavily's search API (the assistant's optional web search)
RERANK_PATH = "/v1/rerank"
VOYAGE_RERANK_MAX_DOCUMENTS = 1000
TOOL_NAME = "record_analysis"
IMAGE_MEDIA_TYPES = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
# Minimum cacheable prefix (tokens) by model-name prefix, from Anthropic's prompt-caching docs;
# models not listed: 1,024.
CACHE_MINIMUM_TOKENS = {
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
CACHE_TTLS = {"5m": 300.0, "1h": 3600.0}
MAX_CACHE_BREAKPOINTS = 4
VOYAGE_DIMENSIONS = (256, 512, 1024, 2048)
VOYAGE_DEFAULT_DIMENSION = 1024
VOYAGE_MAX_INPUTS = 1000
ANALYSIS_FIELDS = (
    "category",
    "subcategories",
    "headline",
    "summary",
    "media_metadata",
    "image_details",
)

# An invented analysis (not taken from any dataset) of a travel screenshot.
DEFAULT_ANALYSIS: dict[str, Any] = {
    "category": "Travel",
    "subcategories": ["Food", "Itinerary", "Budget"],
    "headline": "Three days in Lisbon on a budget: pastel de nata at Manteigaria, tram 28, "
    "sunset at Miradouro da Senhora do Monte",
    "summary": "A creator's three-day Lisbon itinerary with prices. Day one covers the Alfama "
    "on tram 28 (3.10 EUR), day two a pastel de nata crawl, day three the sunset viewpoint at "
    "Senhora do Monte.",
    "media_metadata": {
        "original_poster": "wanderfork",
        "tagged_accounts": ["@manteigaria"],
        "location_tags": ["Lisbon, Portugal", "Miradouro da Senhora do Monte"],
        "audio_source": "original sound - wanderfork",
        "hashtags": ["#lisbon", "#traveltok"],
    },
    "image_details": {
        "extracted_text": [
            "3 days in Lisbon",
            "Tram 28 - 3.10 EUR",
            "Manteigaria pastel de nata - 1.30 EUR",
            "#lisbon #traveltok",
        ],
        "objects": ["yellow tram", "pastry box", "tiled facade", "tiktok ui elements"],
        "themes": ["budget travel", "food", "city guide"],
        "emotions": ["excitement", "nostalgia"],
        "vibes": ["sunny", "warm", "colorful"],
        "likely_source": "TikTok",
        "key_interest": "Prices and order of stops for a three-day Lisbon trip",
        "visual_hierarchy": ["'3 days in Lisbon' title", "yellow tram photo", "price overlay"],
    },
}

MALFORMED_ANALYSIS: dict[str, Any] = {
    "headline": "x" * 300,
    "summary": "The category is missing and the headline is far too long.",
    "subcategories": "not-a-list-of-strings-but-that-is-tolerated",
}

AnalysisSource = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
AssistantPolicy = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    problems: list[str] = field(default_factory=list)
    status: int = 0
    scripted: Any = None
    image_size: tuple[int, int] | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeModelServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.close_connection = True


class FakeModelServer:
    """See the module docstring. ``url`` is ``http://127.0.0.1:PORT`` once started."""

    def __init__(
        self,
        *,
        anthropic_model: str | None = "claude-sonnet-4-6",
        voyage_model: str | None = "voyage-3.5-lite",
        voyage_rerank_model: str | None = "rerank-2.5",
        api_key: str | None = None,
        analysis: AnalysisSource | None = None,
        max_image_edge: int = 1568,
        retry_after_ms: int | None = 10,
    ) -> None:
        self.anthropic_model = anthropic_model
        self.voyage_model = voyage_model
        self.voyage_rerank_model = voyage_rerank_model
        self.api_key = api_key  # None: any non-empty key is accepted
        self.analysis: AnalysisSource = analysis if analysis is not None else DEFAULT_ANALYSIS
        # The assistant's behaviour when nothing is scripted (see ``assistant_turn``).
        self.assistant_policy: AssistantPolicy | None = None
        self.max_image_edge = max_image_edge
        self.retry_after_ms = retry_after_ms
        self.requests: list[RecordedRequest] = []
        self.problems: list[str] = []
        self._scripts: dict[str, deque[Any]] = {}
        self._prompt_cache: dict[str, float] = {}  # prefix digest -> expiry (monotonic)
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeModelServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def voyage_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> FakeModelServer:
        if self._httpd is None:
            httpd = _Server(("127.0.0.1", 0), _Handler)
            httpd.fake = self
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, name="fake-model-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------------

    def script(self, path: str, items: Iterable[Any]) -> None:
        """Queue canned behaviours for ``path``, served before normal answers."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(items)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.problems.clear()
            self._scripts.clear()
            self._prompt_cache.clear()
        self.assistant_policy = None

    # -- dispatch --------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        record = RecordedRequest(method=handler.command, path=path, headers=headers, body=None)
        parse_problem = None
        try:
            record.body = json.loads(raw) if raw else None
        except ValueError:
            parse_problem = "request body is not JSON"
        with self._lock:
            self.requests.append(record)
            queue = self._scripts.get(path)
            record.scripted = queue.popleft() if queue else None
        if parse_problem:
            self._problem(record, parse_problem)

        if handler.command == "POST" and path == WEB_SEARCH_PATH:
            self._web_search(handler, record)
            return
        if handler.command != "POST" or path not in (MESSAGES_PATH, EMBEDDINGS_PATH, RERANK_PATH):
            self._problem(record, f"unexpected request {handler.command} {path}")
            handler.send_json(
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"Not found: {path}"},
                },
            )
            record.status = 404
            return

        if path == MESSAGES_PATH:
            self._messages(handler, record)
        elif path == RERANK_PATH:
            self._rerank(handler, record)
        else:
            self._embeddings(handler, record)

    def _problem(self, record: RecordedRequest, problem: str) -> None:
        record.problems.append(problem)
        with self._lock:
            self.problems.append(f"{record.path}: {problem}")

    def _sleep_if_scripted(self, record: RecordedRequest) -> None:
        item = record.scripted
        if isinstance(item, tuple) and len(item) == 2 and item[0] == "sleep":
            time.sleep(float(item[1]))

    def answered(self, path: str) -> int:
        """Requests to ``path`` answered with a result (200) to a client still there to get it:
        what the real API would bill. A client that died mid-request is not counted."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and r.status == 200)

    # -- Anthropic Messages API ------------------------------------------------------------------

    def _messages(self, handler: _Handler, record: RecordedRequest) -> None:
        if is_assistant_request(record.body):
            self._assistant(handler, record)
            return
        for problem in self._validate_messages(record):
            self._problem(record, problem)
        if self._answered_with_error(handler, record):
            return
        item = record.scripted
        if _client_gone(handler):
            record.status = 499  # nginx's "client closed request": nothing was delivered
            handler.close_connection = True
            return

        body = record.body
        if item == "text_only":
            content = [{"type": "text", "text": "Here is a description of the image."}]
            stop_reason = "end_turn"
        else:
            if item == "malformed":
                tool_input = MALFORMED_ANALYSIS
            elif isinstance(item, dict):
                tool_input = item
            elif callable(self.analysis):
                tool_input = self.analysis(body)
            else:
                tool_input = self.analysis
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": TOOL_NAME,
                    "input": tool_input,
                }
            ]
            stop_reason = "tool_use"

        output_tokens = max(1, len(json.dumps(content)) // 4)
        usage = {**self._input_usage(record), "output_tokens": output_tokens}
        record.status = 200
        handler.send_json(
            200,
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            },
        )

    def _input_usage(self, record: RecordedRequest) -> dict[str, int]:
        """Input tokens split into uncached, cache-written and cache-read, as the API reports."""
        segments = _prompt_segments(record.body, record.image_size)
        total = sum(tokens for _, tokens, _ in segments) + 20
        model = str(record.body.get("model", ""))
        minimum = next(
            (n for name, n in CACHE_MINIMUM_TOKENS.items() if model.startswith(name)), 1024
        )
        # Each breakpoint's prefix long enough to cache: (tokens, digest, ttl in seconds).
        prefixes = []
        for i, (_, _, ttl) in enumerate(segments):
            tokens = sum(t for _, t, _ in segments[: i + 1])
            if ttl is not None and tokens >= minimum:
                key = json.dumps([k for k, _, _ in segments[: i + 1]])
                prefixes.append((tokens, hashlib.sha256(key.encode()).hexdigest(), CACHE_TTLS[ttl]))
        written = read = 0
        if prefixes:
            # The longest cached prefix is read; the rest up to the last breakpoint is written,
            # and every breakpoint's prefix is (re)cached.
            now = time.monotonic()
            with self._lock:
                hits = [t for t, digest, _ in prefixes if self._prompt_cache.get(digest, 0.0) > now]
                for _, digest, ttl in prefixes:
                    self._prompt_cache[digest] = now + ttl
            read = max(hits, default=0)
            written = prefixes[-1][0] - read
        return {
            "input_tokens": total - written - read,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
        }

    def _assistant(self, handler: _Handler, record: RecordedRequest) -> None:
        """The assistant's tool loop: see ``assistant_turn`` for what it answers."""
        for problem in self._validate_messages_common(record):
            self._problem(record, problem)
        for problem in validate_assistant_request(record.body):
            self._problem(record, problem)
        if self._answered_with_error(handler, record):
            return
        item = record.scripted
        body = record.body
        action = item if isinstance(item, dict) else None
        if action is None and self.assistant_policy is not None:
            action = self.assistant_policy(body)
        content, stop_reason = assistant_turn(body, action)
        record.status = 200
        handler.send_json(
            200,
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    **self._input_usage(record),
                    "output_tokens": max(1, len(json.dumps(content)) // 4),
                },
            },
        )

    def _validate_messages_common(self, record: RecordedRequest) -> list[str]:
        problems = self._check_auth(record, allow_x_api_key=True)
        version = record.headers.get("anthropic-version", "")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
            problems.append(f"anthropic-version header missing or malformed: {version!r}")
        body = record.body
        if self.anthropic_model is not None and body.get("model") != self.anthropic_model:
            problems.append(f"model {body.get('model')!r}, expected {self.anthropic_model!r}")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            problems.append(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if body.get("stream"):
            problems.append("streaming was not expected")
        return problems

    def _web_search(self, handler: _Handler, record: RecordedRequest) -> None:
        """Tavily's ``POST /search``: a Bearer key, a query; answers two invented pages."""
        body = record.body if isinstance(record.body, dict) else {}
        problems = self._check_auth(record, allow_x_api_key=False)
        if not isinstance(body.get("query"), str) or not body["query"].strip():
            problems.append("query must be a non-empty string")
        if not isinstance(body.get("max_results"), int) or not 0 < body["max_results"] <= 20:
            problems.append(f"max_results must be 1..20, got {body.get('max_results')!r}")
        for problem in problems:
            self._problem(record, problem)
        if record.problems:
            record.status = 401 if any(p.startswith("auth:") for p in problems) else 400
            handler.send_json(record.status, {"detail": {"error": "; ".join(problems)}})
            return
        if isinstance(record.scripted, int):
            record.status = record.scripted
            handler.send_json(record.status, {"detail": {"error": "scripted"}})
            return
        query = body["query"]
        results = [
            {
                "title": f"{query} - opening hours",
                "url": "https://example.com/opening-hours",
                "content": f"{query}: open daily 8:00-20:00.",
                "score": 0.9,
            },
            {
                "title": f"{query} - reviews",
                "url": "https://example.org/reviews",
                "content": f"Reviews of {query}.",
                "score": 0.7,
            },
        ][: body["max_results"]]
        record.status = 200
        handler.send_json(200, {"query": query, "results": results, "response_time": 0.1})

    def _answered_with_error(self, handler: _Handler, record: RecordedRequest) -> bool:
        """Answer an invalid request (400/401) or a scripted error status; else wait if a
        sleep is scripted and return False."""
        if record.problems:
            status = 401 if any(p.startswith("auth:") for p in record.problems) else 400
            error_type = "authentication_error" if status == 401 else "invalid_request_error"
            record.status = status
            handler.send_json(status, _anthropic_error(error_type, "; ".join(record.problems)))
            return True
        item = record.scripted
        if isinstance(item, int):
            record.status = item
            handler.send_json(
                item,
                _anthropic_error(_ANTHROPIC_ERROR_TYPES.get(item, "api_error"), f"scripted {item}"),
                self._retry_headers(item),
            )
            return True
        self._sleep_if_scripted(record)
        return False

    def _retry_headers(self, status: int) -> dict[str, str]:
        if status not in (429, 529) or self.retry_after_ms is None:
            return {}
        return {
            "retry-after-ms": str(self.retry_after_ms),
            "retry-after": str(max(1, math.ceil(self.retry_after_ms / 1000))),
        }

    def _check_auth(self, record: RecordedRequest, *, allow_x_api_key: bool) -> list[str]:
        headers = record.headers
        keys = []
        if allow_x_api_key and headers.get("x-api-key"):
            keys.append(headers["x-api-key"])
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and auth[7:].strip():
            keys.append(auth[7:].strip())
        if not keys:
            return ["auth: no API key (x-api-key or Authorization: Bearer)"]
        if self.api_key is not None and self.api_key not in keys:
            return ["auth: wrong API key"]
        return []

    def _validate_messages(self, record: RecordedRequest) -> list[str]:
        if not isinstance(record.body, dict):
            return [*self._check_auth(record, allow_x_api_key=True), "body is not a JSON object"]
        problems = self._validate_messages_common(record)
        body = record.body
        problems += _validate_cache_control(body)
        problems += self._validate_message_list(record, body.get("messages"))
        problems += _validate_tools(body.get("tools"), body.get("tool_choice"))
        return problems

    def _validate_message_list(self, record: RecordedRequest, messages: Any) -> list[str]:
        if not isinstance(messages, list) or len(messages) != 1:
            return ["messages: expected exactly one message"]
        message = messages[0]
        if not isinstance(message, dict) or message.get("role") != "user":
            return ["messages[0]: expected a user message"]
        content = message.get("content")
        if not isinstance(content, list):
            return ["messages[0].content: expected a list of content blocks"]
        images = [b for b in content if isinstance(b, dict) and b.get("type") == "image"]
        texts = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
        problems = []
        if len(images) != 1:
            problems.append(f"messages[0].content: expected one image block, got {len(images)}")
        if not texts or not all(
            isinstance(t.get("text"), str) and t["text"].strip() for t in texts
        ):
            problems.append("messages[0].content: expected a non-empty text block")
        if len(images) == 1:
            problems += self._validate_image(record, images[0])
        return problems

    def _validate_image(self, record: RecordedRequest, block: dict[str, Any]) -> list[str]:
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") != "base64":
            return ["image block: source.type must be base64"]
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            return [f"image block: unsupported media_type {media_type!r}"]
        try:
            data = base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            return ["image block: data is not valid base64"]
        if not data:
            return ["image block: empty data"]
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                fmt, size = image.format, image.size
        except Exception as exc:
            return [f"image block: cannot decode image: {type(exc).__name__}: {exc}"]
        record.image_size = size
        problems = []
        if fmt != IMAGE_MEDIA_TYPES[media_type]:
            problems.append(f"image block: media_type {media_type} but the data is {fmt}")
        if max(size) > self.max_image_edge:
            problems.append(f"image block: long edge {max(size)} px > {self.max_image_edge}")
        return problems

    # -- Voyage AI ------------------------------------------------------------------------------

    def _voyage_refused(
        self, handler: _Handler, record: RecordedRequest, problems: list[str]
    ) -> bool:
        """Answer an invalid or scripted-error request as Voyage would; True if answered (else
        any scripted sleep has been served and the caller answers normally)."""
        for problem in problems:
            self._problem(record, problem)
        if record.problems:
            status = 401 if any(p.startswith("auth:") for p in record.problems) else 400
            record.status = status
            handler.send_json(status, {"detail": "; ".join(record.problems)})
            return True
        item = record.scripted
        if isinstance(item, int):
            record.status = item
            handler.send_json(item, {"detail": f"scripted {item}"}, self._retry_headers(item))
            return True
        self._sleep_if_scripted(record)
        return False

    # -- Voyage AI embeddings API ----------------------------------------------------------------

    def _embeddings(self, handler: _Handler, record: RecordedRequest) -> None:
        if self._voyage_refused(handler, record, self._validate_embeddings(record)):
            return
        item = record.scripted

        body = record.body
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dimension = body.get("output_dimension") or VOYAGE_DEFAULT_DIMENSION
        if item == "malformed":
            dimension = max(1, dimension // 2)
        data = [
            {"object": "embedding", "embedding": hashed_embedding(text, dimension), "index": i}
            for i, text in enumerate(texts)
        ]
        record.status = 200
        handler.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"total_tokens": sum(max(1, len(_words(t))) for t in texts)},
            },
        )

    def _validate_embeddings(self, record: RecordedRequest) -> list[str]:
        problems = self._check_auth(record, allow_x_api_key=False)
        body = record.body
        if not isinstance(body, dict):
            return [*problems, "body is not a JSON object"]
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            problems.append("input must be a non-empty string or list of strings")
        elif not all(isinstance(t, str) and t for t in texts):
            problems.append("input: every item must be a non-empty string")
        elif len(texts) > VOYAGE_MAX_INPUTS:
            problems.append(f"input: {len(texts)} items > {VOYAGE_MAX_INPUTS}")
        if self.voyage_model is not None and body.get("model") != self.voyage_model:
            problems.append(f"model {body.get('model')!r}, expected {self.voyage_model!r}")
        if body.get("input_type") not in ("document", "query"):
            problems.append(f"input_type {body.get('input_type')!r} is not document or query")
        dimension = body.get("output_dimension")
        if dimension is not None and dimension not in VOYAGE_DIMENSIONS:
            problems.append(f"output_dimension {dimension!r} not in {VOYAGE_DIMENSIONS}")
        if body.get("output_dtype") not in (None, "float"):
            problems.append(f"output_dtype {body.get('output_dtype')!r}: only float is served")
        return problems

    # -- Voyage AI rerank API --------------------------------------------------------------------

    def _rerank(self, handler: _Handler, record: RecordedRequest) -> None:
        """Scores each document by the share of the query's words it contains (a stand-in for a
        cross-encoder: deterministic, and a document sharing more words ranks higher)."""
        if self._voyage_refused(handler, record, self._validate_rerank(record)):
            return
        item = record.scripted

        body = record.body
        query = set(_words(body["query"]))
        scored = []
        for index, document in enumerate(body["documents"]):
            words = set(_words(document))
            scored.append((len(query & words) / max(1, len(query)), index))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        top_k = body.get("top_k") or len(scored)
        data = [
            {"relevance_score": round(score, 6), "index": index} for score, index in scored[:top_k]
        ]
        if item == "malformed" and data:
            data[0]["index"] = len(body["documents"])
        words = len(_words(body["query"])) + sum(len(_words(d)) for d in body["documents"])
        record.status = 200
        handler.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"total_tokens": max(1, words)},
            },
        )

    def _validate_rerank(self, record: RecordedRequest) -> list[str]:
        problems = self._check_auth(record, allow_x_api_key=False)
        body = record.body
        if not isinstance(body, dict):
            return [*problems, "body is not a JSON object"]
        if not isinstance(body.get("query"), str) or not body["query"].strip():
            problems.append("query must be a non-empty string")
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            problems.append("documents must be a non-empty list of strings")
        elif not all(isinstance(d, str) and d for d in documents):
            problems.append("documents: every item must be a non-empty string")
        elif len(documents) > VOYAGE_RERANK_MAX_DOCUMENTS:
            problems.append(f"documents: {len(documents)} items > {VOYAGE_RERANK_MAX_DOCUMENTS}")
        if self.voyage_rerank_model is not None and body.get("model") != self.voyage_rerank_model:
            problems.append(f"model {body.get('model')!r}, expected {self.voyage_rerank_model!r}")
        top_k = body.get("top_k")
        if top_k is not None and (
            not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1
        ):
            problems.append(f"top_k {top_k!r} is not a positive integer")
        if body.get("truncation") not in (None, True, False):
            problems.append(f"truncation {body.get('truncation')!r} is not a boolean")
        return problems


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _client_gone(handler: _Handler) -> bool:
    """Whether the client closed its connection (e.g. its process was killed) while waiting."""
    import select
    import socket

    connection = handler.connection
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def _contains_ref(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_contains_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_contains_ref(v) for v in node)
    return False


def _validate_tools(tools: Any, tool_choice: Any) -> list[str]:
    if not isinstance(tools, list) or not tools:
        return ["tools: expected the record_analysis tool"]
    tool = next((t for t in tools if isinstance(t, dict) and t.get("name") == TOOL_NAME), None)
    if tool is None:
        return [f"tools: no tool named {TOOL_NAME}"]
    problems = []
    schema = tool.get("input_schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        problems.append("record_analysis.input_schema must be a JSON schema of type object")
    else:
        properties = schema.get("properties") or {}
        missing = [f for f in ANALYSIS_FIELDS if f not in properties]
        if missing:
            problems.append(f"record_analysis.input_schema lacks properties {missing}")
        if _contains_ref(schema):
            problems.append("record_analysis.input_schema uses $ref")
        headline = properties.get("headline") or {}
        if headline.get("maxLength") != 140:
            problems.append("record_analysis.input_schema: headline.maxLength is not 140")
    if (
        not isinstance(tool_choice, dict)
        or tool_choice.get("type") != "tool"
        or (tool_choice.get("name") != TOOL_NAME)
    ):
        problems.append(f"tool_choice must force {TOOL_NAME}, got {tool_choice!r}")
    return problems


def _blocks(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(where, block) of everything that may carry ``cache_control``, in prefix order."""
    found: list[tuple[str, Any]] = [
        (f"tools[{i}]", t) for i, t in enumerate(body.get("tools") or [])
    ]
    system = body.get("system")
    if isinstance(system, list):
        found += [(f"system[{i}]", b) for i, b in enumerate(system)]
    for m, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found += [(f"messages[{m}].content[{i}]", b) for i, b in enumerate(content)]
    return found


def _validate_cache_control(body: dict[str, Any]) -> list[str]:
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return ["system: expected a string or a list of text blocks"]
    if isinstance(system, list) and not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        return ["system: every block must be {type: text, text: ...}"]
    problems, count = [], 0
    for where, block in _blocks(body):
        if not isinstance(block, dict) or "cache_control" not in block:
            continue
        count += 1
        control = block["cache_control"]
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            problems.append(f"{where}.cache_control: type must be 'ephemeral', got {control!r}")
        elif set(control) - {"type", "ttl"} or control.get("ttl", "5m") not in CACHE_TTLS:
            problems.append(f"{where}.cache_control: unexpected {control!r}")
    if count > MAX_CACHE_BREAKPOINTS:
        problems.append(f"cache_control: {count} breakpoints, at most {MAX_CACHE_BREAKPOINTS}")
    return problems


def _prompt_segments(
    body: dict[str, Any], image_size: tuple[int, int] | None
) -> list[tuple[Any, int, str | None]]:
    """(content key, estimated tokens, cache ttl if a breakpoint ends here) in prefix order:
    tools, then the system prompt, then each message's content (text turns included)."""
    parts: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    parts += system if isinstance(system, list) else [system] if system else []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        parts += content if isinstance(content, list) else [content] if content else []
    segments: list[tuple[Any, int, str | None]] = []
    for part in parts:
        # The API reads text given as a string as one text block: the same prefix either way.
        block = {"type": "text", "text": part} if isinstance(part, str) else part
        if not isinstance(block, dict):
            continue
        content = {k: v for k, v in block.items() if k != "cache_control"}
        if content.get("type") == "image":
            width, height = image_size or (0, 0)
            tokens = math.ceil(width * height / 750)
        else:
            tokens = len(json.dumps(content)) // 4
        control = block.get("cache_control")
        ttl = control.get("ttl", "5m") if isinstance(control, dict) else None
        segments.append((content, tokens, ttl))
    return segments


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector: hashed bag of words (texts sharing words are similar)."""
    vector = [0.0] * dimension
    for word in _words(text) or [""]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimension
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


# -- the assistant's requests ---------------------------------------------------------------------

ASSISTANT_TOOLS = ("search_collection", "get_item", "web_search")
SEARCH_MODES = {"keyword", "semantic", "hybrid"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def is_assistant_request(body: Any) -> bool:
    tools = body.get("tools") if isinstance(body, dict) else None
    return isinstance(tools, list) and any(
        isinstance(t, dict) and t.get("name") == "search_collection" for t in tools
    )


def search_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every search_result block of the request, in the order the API counts them
    (``search_result_index``)."""
    found = []
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "search_result":
                found.append(block)
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                found.extend(b for b in block["content"] if b.get("type") == "search_result")
    return found


def last_tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    last = body["messages"][-1]
    content = last.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if b.get("type") == "tool_result"]


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            return content
        if message.get("role") == "user" and isinstance(content, list):
            texts = [b.get("text", "") for b in content if b.get("type") == "text"]
            if texts:
                return " ".join(texts)
    return ""


def assistant_turn(
    body: dict[str, Any], action: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], str]:
    """The model's next turn. ``action``:

    - ``{"tool_use": [{"name": ..., "input": {...}}, ...]}``: call these tools;
    - ``{"answer": "text"}``: answer, citing every search result of the last tool results;
    - None: search the collection with the question first, then answer citing the results.
    """
    if action is None:
        if last_tool_results(body):
            action = {"answer": "Here is what you saved:"}
        else:
            action = {
                "tool_use": [
                    {"name": "search_collection", "input": {"query": last_user_text(body)}}
                ]
            }
    if "tool_use" in action:
        content = [{"type": "text", "text": "Let me look."}]
        content += [
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": call["name"],
                "input": call.get("input", {}),
            }
            for call in action["tool_use"]
        ]
        return content, "tool_use"
    every = search_results(body)
    cited = [
        b
        for result in last_tool_results(body)
        if isinstance(result.get("content"), list)
        for b in result["content"]
        if b.get("type") == "search_result"
    ]
    content = [{"type": "text", "text": str(action.get("answer", ""))}]
    for block in cited:
        index = next(i for i, b in enumerate(every) if b is block)
        content.append(
            {
                "type": "text",
                "text": f" {block['title']}.",
                "citations": [
                    {
                        "type": "search_result_location",
                        "source": block["source"],
                        "title": block["title"],
                        "cited_text": block["content"][0]["text"],
                        "search_result_index": index,
                        "start_block_index": 0,
                        "end_block_index": 1,
                    }
                ],
            }
        )
    if not cited:
        content[0]["text"] += " I found nothing about that in your collection."
    return content, "end_turn"


def validate_assistant_request(body: dict[str, Any]) -> list[str]:
    """What the Messages API would refuse in a tool-loop request."""
    problems = []
    system = body.get("system")
    if isinstance(system, list):  # text blocks, as the API also accepts
        texts = [b.get("text") for b in system if isinstance(b, dict) and b.get("type") == "text"]
        system = "".join(str(t or "") for t in texts)
    if not isinstance(system, str) or not system.strip():
        problems.append("system: expected the assistant's instructions")
    problems += _validate_cache_control(body)
    problems += _validate_assistant_tools(body.get("tools"), body.get("tool_choice"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "messages: expected a non-empty list"]
    previous_tool_uses: set[str] = set()
    for n, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        expected = "user" if n % 2 == 0 else "assistant"
        if role != expected:
            problems.append(f"messages[{n}]: role {role!r}, expected {expected!r} (alternating)")
            continue
        content = message.get("content")
        if isinstance(content, str):
            if not content.strip():
                problems.append(f"messages[{n}]: empty text")
            if role == "user" and previous_tool_uses:
                problems.append(
                    f"messages[{n}]: tool_use ids {sorted(previous_tool_uses)} unanswered"
                )
            previous_tool_uses = set()
            continue
        if not isinstance(content, list) or not content:
            problems.append(f"messages[{n}].content: expected text or a list of blocks")
            continue
        if role == "assistant":
            previous_tool_uses = set()
            for block in content:
                kind = block.get("type")
                if kind == "tool_use":
                    if not isinstance(block.get("input"), dict) or not block.get("id"):
                        problems.append(f"messages[{n}]: tool_use needs an id and an input object")
                    previous_tool_uses.add(block.get("id"))
                elif kind != "text" or not str(block.get("text", "")).strip():
                    problems.append(f"messages[{n}]: unexpected assistant block {kind!r}")
            continue
        results = [b for b in content if b.get("type") == "tool_result"]
        answered = [b.get("tool_use_id") for b in results]
        if content[: len(results)] != results:
            problems.append(f"messages[{n}]: tool_result blocks must come first")
        if set(answered) != previous_tool_uses or len(answered) != len(set(answered)):
            problems.append(
                f"messages[{n}]: tool_result ids {sorted(map(str, answered))} do not answer the "
                f"tool_use ids {sorted(map(str, previous_tool_uses))} of the previous turn"
            )
        previous_tool_uses = set()
        for block in content:
            if block.get("type") == "tool_result":
                problems += _validate_tool_result(n, block)
            elif block.get("type") != "text" or not str(block.get("text", "")).strip():
                problems.append(f"messages[{n}]: unexpected user block {block.get('type')!r}")
    if messages[-1].get("role") != "user":
        problems.append("messages: the last message must be the user's")
    enabled = {bool((b.get("citations") or {}).get("enabled")) for b in search_results(body)}
    if len(enabled) > 1:
        problems.append("search_result: citations must be enabled on all or none")
    return problems


def _validate_tool_result(n: int, block: dict[str, Any]) -> list[str]:
    content = block.get("content")
    if isinstance(content, str):
        return []
    if not isinstance(content, list) or not content:
        return [f"messages[{n}]: tool_result content must be text or a non-empty list"]
    problems = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if not str(part.get("text", "")).strip():
                problems.append(f"messages[{n}]: empty text in a tool_result")
        elif kind == "search_result":
            if not isinstance(part.get("source"), str) or not part["source"]:
                problems.append(f"messages[{n}]: search_result.source must be a non-empty string")
            if not isinstance(part.get("title"), str) or not part["title"]:
                problems.append(f"messages[{n}]: search_result.title must be a non-empty string")
            texts = part.get("content")
            if (
                not isinstance(texts, list)
                or not texts
                or not all(
                    t.get("type") == "text" and isinstance(t.get("text"), str) and t["text"]
                    for t in texts
                )
            ):
                problems.append(
                    f"messages[{n}]: search_result.content must be non-empty text blocks"
                )
            extra = set(part) - {"type", "source", "title", "content", "citations", "cache_control"}
            if extra:
                problems.append(f"messages[{n}]: search_result has unknown fields {sorted(extra)}")
        else:
            problems.append(f"messages[{n}]: unexpected tool_result block {kind!r}")
    return problems


def _validate_assistant_tools(tools: Any, tool_choice: Any) -> list[str]:
    problems = []
    names = []
    for tool in tools:
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            problems.append(f"tools: invalid tool name {name!r}")
            continue
        names.append(name)
        if not str(tool.get("description", "")).strip():
            problems.append(f"tools.{name}: needs a description")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"tools.{name}.input_schema must be a JSON schema of type object")
            continue
        if name not in ASSISTANT_TOOLS:
            problems.append(f"tools: unexpected tool {name!r}")
        properties = schema.get("properties") or {}
        if any(key in properties for key in ("user_id", "tenant", "owner")):
            problems.append(f"tools.{name}: exposes a tenant argument")
    if len(names) != len(set(names)):
        problems.append("tools: duplicate names")
    search = next((t for t in tools if t.get("name") == "search_collection"), {})
    schema = search.get("input_schema") or {}
    if "query" not in (schema.get("required") or []):
        problems.append("tools.search_collection: query must be required")
    mode = (schema.get("properties") or {}).get("mode") or {}
    if set(mode.get("enum") or []) != SEARCH_MODES:
        problems.append("tools.search_collection: mode must enumerate keyword/semantic/hybrid")
    if tool_choice not in (None, {"type": "auto"}):
        problems.append(
            f"tool_choice: the assistant must let the model choose, got {tool_choice!r}"
        )
    return problems
