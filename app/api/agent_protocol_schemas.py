"""The Agent Protocol's request and response bodies (v1), as agbenchmark and the published
agent-protocol-client read them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskRequestBody(BaseModel):
    input: str | None = Field(default=None, max_length=100_000)
    additional_input: dict[str, Any] | None = None


class StepRequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | None = Field(default=None, max_length=20_000)
    additional_input: dict[str, Any] | None = None


class Artifact(BaseModel):
    artifact_id: str
    agent_created: bool
    file_name: str
    relative_path: str | None = Field(
        default=None, description="The folder of the file ('' for the top), not its name")
    created_at: datetime


class APTask(BaseModel):
    task_id: str
    input: str | None
    additional_input: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)


class Step(BaseModel):
    task_id: str
    step_id: str
    name: str | None
    status: str
    input: str | None = None
    output: str | None = None
    additional_input: dict[str, Any] = Field(default_factory=dict)
    additional_output: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    is_last: bool = False


class Pagination(BaseModel):
    total_items: int
    total_pages: int
    current_page: int
    page_size: int


class TaskListResponse(BaseModel):
    tasks: list[APTask]
    pagination: Pagination


class StepListResponse(BaseModel):
    steps: list[Step]
    pagination: Pagination


class ArtifactListResponse(BaseModel):
    artifacts: list[Artifact]
    pagination: Pagination
