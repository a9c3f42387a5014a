"""Every task kind is registered twice, once for what it is and once for how it runs."""

from app import kinds
from app.models import TaskCreate, TaskKind
from app.run.kinds import RUNNERS


def test_every_kind_has_a_spec_and_a_runner() -> None:
    assert kinds.names() == sorted(k.value for k in TaskKind)
    assert sorted(RUNNERS) == kinds.names()


def test_unknown_kind_is_a_lookup_error() -> None:
    try:
        kinds.get("nope")
    except kinds.UnknownKind as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("an unknown kind was found")


def test_each_kind_validates_its_own_requests() -> None:
    assert kinds.get("agent").validate(TaskCreate(kind=TaskKind.agent)) == [
        {"loc": ["title"], "msg": "a task needs a title or a description"}]
    assert kinds.get("agent").validate(TaskCreate(title="t")) == []
    assert kinds.get("playbook").validate(TaskCreate(kind=TaskKind.playbook))[0]["loc"] == [
        "playbook"]
    problems = kinds.get("scenario").validate(TaskCreate(kind=TaskKind.scenario, scenario="nope"))
    assert problems and "nope" in problems[0]["msg"]


def test_template_types_come_from_the_kinds() -> None:
    types = kinds.templates()
    assert sorted(types) == ["agents", "playbooks", "scenarios"]
    assert types["playbooks"].check is None  # files only
    assert types["scenarios"].check is not None and types["agents"].json_schema is not None
