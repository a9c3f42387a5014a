"""SQLModel tables and their public schemas; every table module is imported here."""

from app.models.agent import (
    Agent,
    AgentCreate,
    AgentPublic,
    AgentsPublic,
    AgentStatus,
    AgentUpdate,
)
from app.models.base import table, utcnow
from app.models.event import EventPublic, EventsPublic, TaskEvent
from app.models.intent import ToolIntent
from app.models.outbox import OutboxMessage, OutboxStatus
from app.models.provider import ProviderState
from app.models.task import (
    RUNNING,
    RUNNING_VALUES,
    TERMINAL,
    TERMINAL_VALUES,
    WORKING,
    WORKING_VALUES,
    AnswerCreate,
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
from app.models.template import TemplatePublic, TemplateRecord, TemplatesPublic
from app.models.user import ApiKey, User, UserPublic
from app.models.worker import WorkerNode

__all__ = [
    "RUNNING",
    "RUNNING_VALUES",
    "TERMINAL",
    "TERMINAL_VALUES",
    "WORKING",
    "WORKING_VALUES",
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
    "AnswerCreate",
    "MessageCreate",
    "MessagePublic",
    "OutboxMessage",
    "OutboxStatus",
    "ProviderState",
    "Task",
    "TaskCheckpoint",
    "TaskCreate",
    "TaskEvent",
    "TaskKind",
    "TaskMessage",
    "TaskPublic",
    "TaskStatus",
    "TasksPublic",
    "TemplatePublic",
    "ToolIntent",
    "TemplateRecord",
    "TemplatesPublic",
    "User",
    "UserPublic",
    "WorkerNode",
    "table",
    "utcnow",
]
