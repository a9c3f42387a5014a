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


BEFORE_FORK = """
import gc
import worker.tasks
from celery.signals import worker_init
before = gc.get_freeze_count()
worker_init.send(sender=None)
print(before, gc.get_freeze_count())
"""


def test_the_worker_freezes_what_its_pool_children_inherit_before_they_fork():
    # given the worker's modules loaded, when Celery announces the worker (before the pool forks)
    out = subprocess.run([sys.executable, "-c", BEFORE_FORK], capture_output=True, text=True,
                         check=True).stdout.split()
    before, frozen = map(int, out)
    # then everything loaded so far is out of the collector's sight
    assert before == 0 and frozen > 10_000
