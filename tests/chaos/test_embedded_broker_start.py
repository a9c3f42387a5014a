"""Two workers starting at once on the embedded broker: both look for the task queue, miss it,
and insert it; the second insert breaks the unique name. That worker used to die at start
(`UNIQUE constraint failed: kombu_queue.name`); now it takes the queue the other made."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection

from worker.embedded_broker import Channel, register


def test_a_queue_made_by_another_process_meanwhile_is_taken_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # given the queue made by one worker's channel
    register()
    url = f"tbsqla+sqlite:///{tmp_path / 'broker.db'}"
    with Connection(url) as first:
        made = first.default_channel._get_or_create("taskbench")
        with Connection(url) as second:
            channel = second.default_channel
            assert isinstance(channel, Channel)
            # when the other worker's lookup ran before that insert (it saw no queue)
            looks = {"n": 0}
            real_query = channel.session.query

            def query(*args):  # type: ignore[no-untyped-def]
                found = real_query(*args)
                looks["n"] += 1
                return found.filter(False) if looks["n"] <= 2 else found

            monkeypatch.setattr(channel.session, "query", query)
            # then its insert's unique-name failure gives it the existing queue
            taken = channel._get_or_create("taskbench")
    assert taken.id == made.id
