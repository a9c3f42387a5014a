"""Run every benchmark in turn: `python -m benchmarks [name ...]`.

Each prints its figures beside a baseline measured in the same run; see benchmarks/README.md.
"""

from __future__ import annotations

import subprocess
import sys

ALL = ["bench_pipeline", "bench_loop", "bench_checkpoint", "bench_jail", "bench_deliver",
       "bench_scenario", "bench_observatory", "bench_stream", "bench_submit", "bench_memory",
       "bench_embeddings", "chaos"]


def main(names: list[str]) -> int:
    failed = 0
    for name in names or ALL:
        print(f"\n=== {name}", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        if rc:
            print(f"{name} exited {rc}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
