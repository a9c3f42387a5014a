"""Which sandbox mode commands run in, decided by a probe that is never trusted forever.

    TASKBENCH_SANDBOX   bwrap installed   probe      mode      on failure
    "none"              -                 -          none      -
    "bwrap"             any               ok         bwrap     SandboxUnavailable (refuse)
    "" (auto)           yes               ok         bwrap     SandboxUnavailable (refuse)
    "" (auto)           no                -          none      (said loudly in /health)

A failed probe is remembered for `RETRY_AFTER_S` only, then bubblewrap is probed again: a
transient failure (EAGAIN creating a namespace while another task fork-bombs) must neither
break a worker for life nor make it run commands unjailed. A success is kept until a jailed
command fails to start, which forgets it (`forget`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable

from app.core.config import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_S = 2.0


class SandboxUnavailable(RuntimeError):  # noqa: N818 - reads as a state, like TimeoutError
    """The jail is the configured mode but cannot run now: refuse, retry the task later."""


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # the probe itself may call `forget`
        self.ok: bool | None = None
        self.error = ""
        self.checked_at = 0.0
        self.failures = 0


_state = _State()


def bwrap_binary(settings: Settings) -> str | None:
    """The bubblewrap executable the jail uses (`settings.bwrap_path` or PATH's)."""
    return shutil.which(settings.bwrap_path or "bwrap")


def resolve_mode(settings: Settings, probe: Callable[[], str]) -> str:
    """"bwrap" or "none"; raises SandboxUnavailable instead of ever degrading from the jail."""
    wanted = (settings.sandbox or "").strip().lower()
    if wanted == "none":
        return "none"
    if wanted != "bwrap" and not bwrap_binary(settings):
        return "none"  # auto and nothing to jail with: the self-test says so in /health
    with _state.lock:
        now = time.monotonic()
        stale = _state.ok is None or (not _state.ok and now - _state.checked_at >= RETRY_AFTER_S)
        if stale:
            error = probe()
            _state.ok, _state.error, _state.checked_at = not error, error, now
            _state.failures = 0 if not error else _state.failures + 1
            if error:
                log.error("SANDBOX UNAVAILABLE (probe %d): %s; commands are refused until "
                          "bubblewrap works again", _state.failures, error)
        if _state.ok:
            return "bwrap"
        raise SandboxUnavailable(f"the jail (bubblewrap) cannot run here now: {_state.error}")


def forget(error: str) -> None:
    """A jailed command could not start: probe again before the next one."""
    with _state.lock:
        _state.ok, _state.error, _state.checked_at = False, error, 0.0


def status() -> dict[str, object]:
    """The probe's last word, for /health."""
    with _state.lock:
        return {"probed": _state.ok is not None, "ok": bool(_state.ok), "error": _state.error,
                "consecutive_failures": _state.failures}


def reset() -> None:
    """Forget everything (tests; a worker pool child after fork)."""
    with _state.lock:
        _state.ok, _state.error, _state.checked_at, _state.failures = None, "", 0.0, 0
