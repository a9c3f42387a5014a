"""A stalled-loop watchdog: a thread that notices when an asyncio event loop has not run a
callback for `stall_s` seconds and logs the stack of the loop's thread, i.e. the synchronous
call that is holding it (a file walk, a subprocess wait, a CPU-heavy diff, a blocking client).

While a loop is stalled nothing else on it runs: not the lease keeper, not cancellation, not
other tasks' steps. The watchdog posts a no-op callback with `call_soon_threadsafe` and, when it
has not run after `stall_s`, reports once per stall (`sys._current_frames()` gives the loop
thread's frame without stopping it).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)


class LoopWatchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, *, stall_s: float,
                 loop_thread: int | None = None) -> None:
        self.loop, self.stall_s = loop, stall_s
        self.loop_thread = loop_thread or threading.get_ident()
        self.stalls = 0  # how many stalls were reported
        self.last_stack = ""
        self._posted: float | None = None
        self._reported = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="taskbench-loop-watchdog",
                                        daemon=True)

    def start(self) -> LoopWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _tick(self) -> None:  # runs on the loop
        self.loop_thread = threading.get_ident()
        self._posted, self._reported = None, False

    def _watch(self) -> None:
        interval = max(self.stall_s / 4, 0.05)
        while not self._stop.wait(interval):
            if self.loop.is_closed():
                return
            if not self.loop.is_running():  # idle between tasks: not a stall
                self._posted = None
                continue
            posted = self._posted
            if posted is None:
                self._posted = time.monotonic()
                try:
                    self.loop.call_soon_threadsafe(self._tick)
                except RuntimeError:  # closed meanwhile
                    return
            elif not self._reported and time.monotonic() - posted >= self.stall_s:
                self._reported = True
                self._report(time.monotonic() - posted)

    def _report(self, stalled_s: float) -> None:
        frame = sys._current_frames().get(self.loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
        self.stalls += 1
        self.last_stack = stack
        log.warning("event loop stalled for %.1f s (no callback ran); the loop thread is in:\n%s",
                    stalled_s, stack)
