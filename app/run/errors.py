"""Why a run stops early. Each carries the reason the task records.

    RunStopped
    ├── TaskCancelled      a person (or the parent) cancelled the task
    ├── TaskPaused         a person paused the task (it goes on from its checkpoint on resume)
    ├── LeaseLost          another worker holds the task now; this one must stop touching it
    ├── BudgetExceeded     steps, tokens, cost or wall time ran out
    └── AgentFailed        the agent cannot go on (all models failed, stuck, bad playbook)
        └── ReviewFailed   the inspector did not pass the work after its last allowed review
"""

from __future__ import annotations


class RunStopped(Exception):
    """The run ends before the agent finished; `str(exc)` is the reason."""


class TaskCancelled(RunStopped):
    pass


class TaskPaused(RunStopped):
    pass


class LeaseLost(RunStopped):
    pass


class BudgetExceeded(RunStopped):
    pass


class AgentFailed(RunStopped):
    pass


class ReviewFailed(AgentFailed):
    pass
