"""from_row: a table model made from a database row as SQLAlchemy's loading makes one."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect

from app.models import Task, from_row, table


def _row() -> dict[str, object]:
    row: dict[str, object] = {c.name: None for c in table(Task).c}
    now = datetime.now(UTC)
    row.update(id=7, title="t", description="d", status="running", complexity=3, attempts=1,
               tool_deaths=0, steps=2, prompt_tokens=20, completion_tokens=10, cost_usd=0.5,
               last_seq=4, kind="agent", created_at=now, updated_at=now, budget={"steps": 9},
               spec={"wait": None})
    return row


def test_a_model_from_a_row_holds_what_the_constructor_would():
    row = _row()
    loaded, built = from_row(Task, row), Task(**row)
    assert loaded.model_dump() == built.model_dump()
    assert loaded.model_fields_set == built.model_fields_set


def test_its_attributes_are_set_through_the_mapping_and_tracked():
    task = from_row(Task, _row())
    task.phase = "build"
    assert task.phase == "build" and task.model_dump()["phase"] == "build"
    assert inspect(task).attrs.phase.history.added == ["build"]
    # the row it was made from is not shared with it
    row = _row()
    other = from_row(Task, row)
    other.title = "changed"
    assert row["title"] == "t"
