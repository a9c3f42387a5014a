"""/scenarios/runs/{id}/messages: a person speaks in a run as a participant ("user").

The message waits in the task's inbox (as any task message) until the run's next turn begins;
then the character addressed — or every character, for `to: "all"` — answers the participant
in that turn, and its answer moves its tie with the participant like any other interaction
(app.run.scenario.turn). The transcript shows the message, the answers and the ties they moved.

Once the run has begun its last turn no turn is left to answer: the message is refused (409).
One that slipped in anyway (sent as the last turn began) is shown in the transcript as not
delivered, with why (app.run.scenario.engine) — never silently dropped.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.tasks import add_message
from app.kinds.scenario import replay
from app.kinds.scenario.schema import apply_overrides
from app.models import TERMINAL_VALUES, MessageCreate, MessagePublic, Task, TaskKind

router = APIRouter(prefix="/scenarios", tags=["scenarios"])
EVERYONE = "all"


class ParticipantMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=60, description=(
        'a character of the run\'s cast (by name), or "all"'))
    content: str = Field(min_length=1, max_length=4000)


def run_cast(task: Task, events: list[replay.Event]) -> list[str]:
    """The run's cast: as it started, or (not started yet) as its definition and overrides
    will make it."""
    try:
        scenario = replay.started(replay.effective(events))["scenario"]
    except LookupError:
        inputs = (task.spec or {}).get("inputs") or {}
        scenario, _problems = apply_overrides(inputs.get("definition") or {},
                                              inputs.get("overrides") or {})
    characters = scenario.get("characters")
    return [c["name"] for c in characters if isinstance(c, dict) and isinstance(
        c.get("name"), str)] if isinstance(characters, list) else []


@router.post("/runs/{task_id}/messages", status_code=status.HTTP_201_CREATED,
             response_model=MessagePublic,
             responses={409: {"description": "The run has ended or is in its last turn"}})
async def speak_in_run(task_id: int, body: ParticipantMessage, session: SessionDep,
                       user: CurrentUser) -> MessagePublic:
    """Speak to one character of a run, or to all: at the next turn the one addressed (or
    each of them) answers you, and the answer moves its tie with you ("user")."""
    task = await owned_task(session, task_id, user)
    if task.kind != TaskKind.scenario:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} is not a scenario run")
    if task.status in TERMINAL_VALUES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {task_id} has ended ({task.status})")
    events = await replay.load_events(session, task_id)
    if replay.last_turn_begun(events):
        raise HTTPException(status.HTTP_409_CONFLICT, (
            f"run {task_id} is playing its last turn: no turn is left to answer you in "
            "(speak before the last turn, or fork the run to go on)"))
    target = _addressee(body.to, run_cast(task, events))
    return await add_message(session, task, MessageCreate(content=body.content, target=target),
                             user)


def _addressee(to: str, cast: list[str]) -> str | None:
    """The cast member `to` names (any case); None for everyone; else a 422 naming `to`."""
    wanted = to.strip().lower()
    if wanted == EVERYONE:
        return None
    found = next((name for name in cast if name.lower() == wanted), None)
    if found is None:
        problem: dict[str, Any] = {
            "loc": ["body", "to"], "type": "value_error",
            "msg": f"{to!r} is not in the cast ({', '.join(cast)}) and is not \"all\""}
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [problem])
    return found
