"""Tasks: what a user asked for, who runs it, where it is, and what it cost."""

from __future__ import annotations

from datetime import datetime
from email.header import decode_header, make_header
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, field_validator
from pydantic import Field as PField
from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.core.statuses import TaskStatus
from app.models.base import json_column, utcnow


class TaskKind(StrEnum):
    agent = "agent"
    playbook = "playbook"
    scenario = "scenario"


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = PField(default=None, ge=1, le=10_000)
    max_tokens: int | None = PField(default=None, ge=1, le=100_000_000)
    max_cost_usd: float | None = PField(default=None, ge=0, le=10_000)
    timeout_s: int | None = PField(default=None, ge=1, le=7 * 24 * 3600)


class Notify(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: list[EmailStr] = PField(default_factory=list, max_length=50)
    webhook: str | None = PField(
        default=None, max_length=2000, pattern=r"^https?://[^\s]+$",
        description="POSTed a signed JSON body when the task asks a question and when it ends")


class GithubSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # owner/name as GitHub spells them: an owner of letters, digits and inner hyphens, a name
    # that is never `.` or `..` (so `../user` or `a/b/c` cannot steer an API path)
    repo: str | None = PField(
        default=None, max_length=140,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9_.-]{1,100}$")
    base_branch: str | None = PField(default=None, max_length=200, pattern=r"^[A-Za-z0-9._/-]+$")
    issue: str | None = PField(default=None, max_length=500)

    @field_validator("repo")
    @classmethod
    def _repo_name(cls, v: str | None) -> str | None:
        if v is not None and v.split("/", 1)[1] in (".", ".."):
            raise ValueError("the repository's name cannot be '.' or '..'")
        return v

    @field_validator("base_branch")
    @classmethod
    def _ref_name(cls, v: str | None) -> str | None:
        """A branch name git accepts: no `..`, no empty or dot-led part, no `.lock` end."""
        if v is None:
            return v
        parts = v.split("/")
        if ".." in v or v.startswith("-") or v.endswith((".lock", ".")) or any(
                not p or p.startswith(".") for p in parts):
            raise ValueError("not a valid branch name (no '..', empty or dot-led parts, "
                             "leading '-' or trailing '.lock')")
        return v


class TaskCreate(BaseModel):
    """What a client submits. `complexity` is estimated from the text when absent."""

    model_config = ConfigDict(extra="forbid")

    title: str = PField(default="", max_length=300)
    description: str = PField(default="", max_length=100_000)
    kind: TaskKind = TaskKind.agent
    complexity: int | None = PField(default=None, ge=1, le=10)
    priority: int = PField(default=0, ge=-100, le=100)
    budget: Budget = PField(default_factory=Budget)
    notify: Notify = PField(default_factory=Notify)
    github: GithubSpec | None = None
    playbook: str | None = PField(default=None, max_length=100)
    scenario: str | None = PField(default=None, max_length=100)
    inputs: dict[str, Any] = PField(default_factory=dict)
    agent: str | None = PField(default=None, max_length=64, description="Pin to an agent by name")

    @field_validator("title", "description")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @field_validator("title")
    @classmethod
    def _one_line(cls, v: str) -> str:
        # the title becomes an email subject: no line breaks or control characters, not even
        # RFC 2047 encoded ones (=?utf-8?q?a=0D=0ABcc:...?=), which would forge headers
        try:
            decoded = str(make_header(decode_header(v)))
        except (ValueError, LookupError, UnicodeError):
            decoded = v
        if any(ch < " " or ch == "\x7f" for ch in v + decoded):
            raise ValueError("the title must be one line without control characters "
                             "(RFC 2047 encoded ones included)")
        return v


class Task(SQLModel, table=True):
    __table_args__ = (Index("uq_task_owner_idempotency_key", "owner_id", "idempotency_key",
                            unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", index=True)
    parent_id: int | None = Field(default=None, foreign_key="task.id", index=True)
    kind: str = Field(default=TaskKind.agent, max_length=16)
    title: str = Field(max_length=300)
    description: str = ""
    complexity: int = 1
    complexity_estimated: bool = False
    priority: int = 0
    status: str = Field(default=TaskStatus.pending, max_length=24, index=True)
    phase: str | None = Field(default=None, max_length=24)
    agent_id: int | None = Field(default=None, foreign_key="agent.id", index=True)
    pinned_agent: str | None = Field(default=None, max_length=64)
    slot_held: bool = False
    budget: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    notify: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    github: dict[str, Any] | None = Field(default=None, sa_column=json_column())
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    review: dict[str, Any] | None = Field(default=None, sa_column=json_column())
    usage: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    model_used: str | None = Field(default=None, max_length=200)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0
    summary: str | None = None
    error: str | None = None
    workspace: str | None = None
    last_seq: int = 0
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = None
    enqueued_at: datetime | None = None
    # what the run was doing at its lease's last renewal ("tool:<name>" inside a tool call), and
    # how many deliveries died inside a tool: only those count toward max_deliveries
    lease_activity: str | None = Field(default=None, max_length=64)
    tool_deaths: int = 0
    # the deliverables (report, PR body, emails) of an ended task not yet done: the sweep hands
    # them to a worker again when their deliverer died (app.integrations.due)
    delivery_due_at: datetime | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # POST /tasks with an Idempotency-Key header: the key, and a hash of the body sent with it
    idempotency_key: str | None = Field(default=None, max_length=200)
    request_hash: str | None = Field(default=None, max_length=64)


class TaskCheckpoint(SQLModel, table=True):
    """The agent's loop state, saved after every step, and how long its trajectory is.

    The trajectory's messages are rows of CheckpointMessage, one per message, appended as the
    conversation grows (a step writes only its new messages, not the whole conversation
    again); the first `message_count` of them are the conversation. A checkpoint written
    before that (message_count NULL) holds its messages in `messages`."""

    __tablename__ = "task_checkpoint"

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    phase: str | None = Field(default=None, max_length=24)
    messages: list[dict[str, Any]] = Field(default_factory=list, sa_column=json_column())
    message_count: int | None = Field(default=None)
    state: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    updated_at: datetime = Field(default_factory=utcnow)


class CheckpointMessage(SQLModel, table=True):
    """One message of a task's checkpointed conversation, at position `idx`."""

    __tablename__ = "task_checkpoint_message"

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    idx: int = Field(primary_key=True)
    message: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())


class TaskMessage(SQLModel, table=True):
    """A note for a running task: from its owner, its parent or a child."""

    __tablename__ = "task_message"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    author: str = Field(default="user", max_length=64)
    target: str | None = Field(default=None, max_length=100)
    content: str
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


# On PostgreSQL every message inserted notifies this channel with its task's id (a trigger:
# migration 0013), which a run listens on instead of reading its inbox each step (app.core.listen)
INBOX_CHANNEL = "task_inbox"


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = PField(min_length=1, max_length=20_000)
    target: str | None = PField(default=None, max_length=100)


class AnswerCreate(BaseModel):
    """A person's answer to the question a task is waiting on."""

    model_config = ConfigDict(extra="forbid")

    content: str = PField(min_length=1, max_length=20_000)


class MessagePublic(BaseModel):
    id: int
    task_id: int
    author: str
    target: str | None
    content: str
    created_at: datetime
    delivered_at: datetime | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    steps: int


class TaskPublic(BaseModel):
    id: int
    kind: str
    title: str
    description: str
    complexity: int
    complexity_estimated: bool
    priority: int
    status: str
    phase: str | None
    agent: str | None
    agent_id: int | None
    parent_id: int | None
    children: list[int] = PField(default_factory=list)
    model_used: str | None
    usage: Usage
    resources: dict[str, Any] = PField(default_factory=dict)
    budget: dict[str, Any]
    notify: dict[str, Any]
    github: dict[str, Any] | None
    spec: dict[str, Any]
    review: dict[str, Any] | None
    summary: str | None
    error: str | None
    attempts: int
    notifications: list[dict[str, Any]] = PField(default_factory=list)
    links: dict[str, str] = PField(default_factory=dict, description=(
        "Absolute links people open: `dashboard` (the task's page) and `report` (its PDF), "
        "under TASKBENCH_PUBLIC_URL"))
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class TasksPublic(BaseModel):
    data: list[TaskPublic]
    count: int
    next_cursor: str | None = None
