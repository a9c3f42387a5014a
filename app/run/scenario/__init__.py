"""Scenario runs: characters, narrator and analyst taking turns, relationships, a social graph.

    schema.py          what a scenario file may say; validation naming every problem
    store.py           shipped files in templates/scenarios/ and stored templates
    relationships.py   the bounded update formula of a pair's strength and trust
    graph.py           the graph at a turn and its metrics
    replies.py         parsing the models' structured replies
    turn.py            one turn: inbox, narrator, actors (in order or simultaneously), events
    analysis.py        the analyst and the workspace files
    engine.py          run_scenario(ctx): start, resume, fork, play, analyse
    distributed.py     a simultaneous turn as one `act_scenario_turn` Celery task per actor
    replay.py          state, transcript and graph derived from the event log
    outcomes.py        outcome distributions over a batch of runs (objectives met, ties, counts)
    report.py, svg.py  what the PDF report embeds: cast, transcript, graph and ties charts
"""

from app.kinds.scenario.report import scenario_report_context
from app.kinds.scenario.store import load_scenarios, validate_scenario_request
from app.run.scenario.engine import run_scenario

__all__ = [
    "load_scenarios",
    "run_scenario",
    "scenario_report_context",
    "validate_scenario_request",
]
