"""A run's start on PostgreSQL through the driver: the lease with the task's agent as one
statement, and where the run's workspace is, sent on the run's connection with no
transaction around them (each is atomic on its own).

Through SQLAlchemy the same lease (app.run.lease.TAKE joined with the agent) cost ~0.75 ms of
CPU in the worker, most of it result processing of its ~60 columns; here it is one call of the
driver, and the row's JSON columns are decoded as SQLAlchemy's JSON type decodes them (its
timestamps come back as aware UTC datetimes either way). The rules are app.run.lease's: a
lease is taken when it is free, expired, or this owner's own (a retried lease that went
through); a delivery that finds the previous holder's last renewal inside a tool counts a death
in a tool.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON

from app.models import WORKING_VALUES, Agent, Task, table
from app.sandbox.workspace import safe_segment_sql

_AGENT_COLUMNS = [c.name for c in table(Agent).c]
_TASK_JSON = frozenset(c.name for c in table(Task).c if isinstance(c.type, JSON))
_AGENT_JSON = frozenset(c.name for c in table(Agent).c if isinstance(c.type, JSON))
_WORKING = list(WORKING_VALUES)

# $1 task  $2 owner  $3 now  $4 lease until  $5 working statuses  $6 the workspaces' folder
# (resolved). A first run's workspace is recorded here, where Workspace.for_task puts it (not a
# subtask's: it may work in its parent's); a statement of its own after the lease otherwise.
LEASE = """
WITH leased AS (
    UPDATE task SET lease_owner = $2::varchar, attempts = task.attempts + 1,
        workspace = COALESCE(task.workspace, CASE WHEN task.parent_id IS NULL THEN
            $6::varchar || '/' || (SELECT :segment FROM agent a WHERE a.id = task.agent_id)
            || '/' || task.id END),
        tool_deaths = task.tool_deaths + CASE
            WHEN task.lease_activity IS NOT NULL
                 AND COALESCE(task.lease_owner, '') <> $2::varchar THEN 1 ELSE 0 END,
        lease_activity = NULL, lease_expires_at = $4::timestamptz,
        started_at = COALESCE(task.started_at, $3::timestamptz)
    WHERE task.id = $1::int AND task.status = ANY($5::varchar[])
      AND (task.lease_owner IS NULL OR task.lease_expires_at < $3::timestamptz
           OR task.lease_owner = $2::varchar)
    RETURNING task.*
)
SELECT leased.*, :agent_columns,
       (EXISTS (SELECT 1 FROM task_checkpoint c WHERE c.task_id = leased.id)
        OR EXISTS (SELECT 1 FROM tool_intent i
                   WHERE i.task_id = leased.id AND i.settled IS FALSE)) AS resumable
FROM leased LEFT OUTER JOIN agent ON agent.id = leased.agent_id
""".replace(":agent_columns", ", ".join(f'agent."{c}" AS "agent__{c}"' for c in _AGENT_COLUMNS)
   ).replace(":segment", safe_segment_sql("a.name"))
SET_WORKSPACE = "UPDATE task SET workspace = $2::varchar WHERE id = $1::int"
WORKSPACE_OF = "SELECT workspace FROM task WHERE id = $1::int"


def _decoded(value: Any, is_json: bool) -> Any:
    return json.loads(value) if is_json and isinstance(value, str) else value


async def lease(driver: Any, params: dict[str, Any], workspaces: str
                ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """(the task's row, its agent's row, whether there is anything to resume) once the lease
    in `params` (app.run.lease.lease_params) is taken; (None, None, True): not ours."""
    row = await driver.fetchrow(LEASE, params["lease_task"], params["lease_by"],
                                params["lease_now"], params["lease_until"], _WORKING,
                                workspaces)
    if row is None:
        return None, None, True
    task: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("agent__"):
            name = key.removeprefix("agent__")
            agent[name] = _decoded(value, name in _AGENT_JSON)
        elif key != "resumable":
            task[key] = _decoded(value, key in _TASK_JSON)
    return task, (agent if agent.get("id") is not None else None), bool(row["resumable"])
