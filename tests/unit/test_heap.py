"""settle_heap: a worker process's long-lived objects leave the collector's full passes."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from app.core.heap import settle_heap
before = gc.get_freeze_count()
settle_heap()
frozen = gc.get_freeze_count()
settle_heap()
print(before, frozen, gc.get_freeze_count())
"""


def test_the_first_settle_freezes_what_lives_and_later_ones_do_nothing():
    # given a fresh process, when it settles its heap twice
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout.split()
    before, frozen, again = map(int, out)
    # then the first froze the objects alive then, and the second froze nothing more
    assert before == 0 and frozen > 1000 and again == frozen
