"""The embedded broker: kombu's SQLAlchemy transport on SQLite, polling fast.

kombu's SQLAlchemy transport hands every transport option to `create_engine`, so the polling
interval cannot be passed as one; this subclass sets it from the settings instead, and is
registered as the `tbsqla` scheme (`tbsqla+sqlite:///var/broker.db`).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

from app.core.config import get_settings

SCHEME = "tbsqla"


class Transport(SQLAlchemyTransport):
    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.polling_interval = get_settings().broker_polling_interval


def register() -> None:
    TRANSPORT_ALIASES[SCHEME] = "worker.embedded_broker:Transport"
