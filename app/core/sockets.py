"""A look at an idle connection's socket without reading from it."""

from __future__ import annotations

import select
from typing import Any


def has_input(sock: Any) -> bool:
    """Whether anything waits to be read on `sock` now (data, the peer's close or an error), in
    one poll; True for no socket or one that cannot be polled. On a connection its peer sends
    nothing to while it is idle, that means it is closed or closing."""
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
