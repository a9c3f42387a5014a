"""SQLModel tables and their public schemas; every table module is imported here."""

from app.models.agent import (
    Agent,
    AgentCreate,
    AgentPublic,
    AgentsPublic,
    AgentStatus,
    AgentUpdate,
)
from app.models.base import utcnow
from app.models.event import EventPublic, EventsPublic, TaskEvent
from app.models.task import (
    RUNNING,
    TERMINAL,
    Budget,
    MessageCreate,
    MessagePublic,
    Task,
    TaskCheckpoint,
    TaskCreate,
    TaskKind,
    TaskMessage,
    TaskPublic,
    TasksPublic,
    TaskStatus,
)
from app.models.user import ApiKey, User, UserPublic
from app.models.worker import WorkerNode

__all__ = [
    "RUNNING",
    "TERMINAL",
    "Agent",
    "AgentCreate",
    "AgentPublic",
    "AgentStatus",
    "AgentUpdate",
    "AgentsPublic",
    "ApiKey",
    "Budget",
    "EventPublic",
    "EventsPublic",
    "MessageCreate",
    "MessagePublic",
    "Task",
    "TaskCheckpoint",
    "TaskCreate",
    "TaskEvent",
    "TaskKind",
    "TaskMessage",
    "TaskPublic",
    "TaskStatus",
    "TasksPublic",
    "User",
    "UserPublic",
    "WorkerNode",
    "utcnow",
]
