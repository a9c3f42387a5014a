"""The scenario kind: definitions and everything derived from a run's event log.

    schema.py          what a scenario file may say; validation naming every problem
    store.py           shipped files in templates/scenarios/ and stored templates
    relationships.py   the bounded update formula of a pair's strength and trust
    graph.py           the graph at a turn and its metrics
    replies.py         parsing the models' structured replies
    replay.py          state, transcript and graph derived from the event log
    outcomes.py        outcome distributions over a batch of runs (objectives met, ties, counts)
    report.py, svg.py  what the PDF report embeds: cast, transcript, graph and ties charts

How a scenario runs (turns, the analyst, distributed turns): app.run.scenario.
"""

from __future__ import annotations

from typing import Any

from app.integrations.report import add_section
from app.kinds.registry import KindSpec, Problem, TemplateSpec, register
from app.kinds.scenario import schema, store
from app.kinds.scenario.report import scenario_report_context
from app.models import TaskCreate


def validate(task_in: TaskCreate) -> list[Problem]:
    if not task_in.scenario:
        return [{"loc": ["scenario"], "msg": "a scenario task needs `scenario` (its name)"}]
    return store.validate_scenario_request(
        task_in.scenario, task_in.inputs.get("overrides") or {},
        definition=task_in.inputs.get("definition"))


def spec(task_in: TaskCreate) -> dict[str, Any]:
    """What a scenario run keeps in Task.spec besides its name and inputs."""
    inputs = task_in.inputs
    return {"overrides": inputs.get("overrides") or {}, "seed": inputs.get("seed"),
            "fork_of": inputs.get("fork_of"), "from_turn": inputs.get("from_turn")}


SPEC = register(KindSpec(
    name="scenario", validate=validate, spec=spec,
    templates=TemplateSpec(
        type="scenarios", shipped=lambda: {s["name"]: s["data"] for s in store.load_scenarios()},
        check=lambda data: schema.validate(data)[1],
        json_schema=schema.Scenario.model_json_schema),
))

# The run's own part of its PDF: setting, cast, the final graph, strength/trust over the turns,
# the analyst's findings and the transcript.
add_section("scenario", "Scenario", "scenario_section.html", scenario_report_context)
