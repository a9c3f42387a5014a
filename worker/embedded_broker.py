"""The embedded broker: kombu's SQLAlchemy transport on SQLite, polling fast.

kombu's SQLAlchemy transport hands every transport option to `create_engine`, so the polling
interval cannot be passed as one; this subclass sets it from the settings instead, and is
registered as the `tbsqla` scheme (`tbsqla+sqlite:///var/broker.db`). Its channel survives two
workers starting at once (kombu's guard against creating a queue twice is per process).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
from sqlalchemy.exc import IntegrityError

from app.core.config import get_settings

SCHEME = "tbsqla"


class Channel(SQLAlchemyChannel):
    def _get_or_create(self, queue: str) -> Any:
        try:
            return super()._get_or_create(queue)
        except IntegrityError:  # another process made the queue between our look and insert
            self.session.rollback()
            return super()._get_or_create(queue)


class Transport(SQLAlchemyTransport):
    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.polling_interval = get_settings().broker_polling_interval


def register() -> None:
    TRANSPORT_ALIASES[SCHEME] = "worker.embedded_broker:Transport"
