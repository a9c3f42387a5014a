"""An event's data is serialised once (app.tasks.events.Fitted): the JSON it was fitted from
is what the database and pub/sub get, redacted, and it says what the data holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy.orm import configure_mappers

import app.models  # noqa: F401 - every table mapped
from app.tasks.events import MAX_EVENT_BYTES, data_json, fitted, numbered_events
from app.tasks.pubsub import JSON_KEY, encoded, payload

SECRET = "sk-test-" + "z" * 24


def test_fitted_data_carries_the_json_it_was_made_from():
    (_, data), = fitted([("tool_call", {"output": f"key={SECRET}", "when": datetime(2026, 1, 1),
                                        "pair": (1, 2)})])
    assert data_json(data) == data.text  # type: ignore[attr-defined]
    assert json.loads(data_json(data)) == data
    assert SECRET not in data_json(data)
    assert data["pair"] == [1, 2] and data["when"] == "2026-01-01 00:00:00"


def test_a_cut_event_is_json_of_what_it_holds():
    (_, data), = fitted([("big", {"output": "x" * MAX_EVENT_BYTES, "more": ["y" * 100] * 700})])
    assert json.loads(data_json(data)) == data and data["truncated"] is True


def test_the_published_event_embeds_the_stored_json_and_says_the_same():
    configure_mappers()  # as the app's first query would
    (kind, data), = fitted([("llm_call", {"model": "m", "content": "hi\u2028there"})])
    event, = numbered_events(7, 3, [(kind, data)], now=datetime(2026, 1, 1, tzinfo=UTC))
    published = payload(event)
    text = encoded(published)
    assert text == published[JSON_KEY] and data_json(data) in text
    assert json.loads(text) == {k: v for k, v in published.items() if k != JSON_KEY}


def test_data_not_fitted_is_serialised_as_it_is():
    assert json.loads(data_json({"a": [1, {"b": None}]})) == {"a": [1, {"b": None}]}
