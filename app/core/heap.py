"""Keeping full garbage collections short in a long-lived worker process.

A worker process holds about a million objects that live as long as it does (SQLAlchemy,
pydantic, the HTTP client, engines, clients, templates). Every full collection walked them all:
~200 ms, now and then, in the middle of some task's step. After the process's first task (by
then the lazily imported libraries are loaded) `settle_heap` collects once and freezes what is
left, so later full collections only walk what tasks allocate since.
"""

from __future__ import annotations

import gc

_settled = False


def settle_heap() -> None:
    """Once per process: collect, then move every surviving object out of the collector's way."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
