"""The OpenAPI document is good enough to generate a working client: openapi-python-client
(from the lock) generates one into a temporary folder, and it uploads and downloads files,
reads error bodies, and calls operations by their names, against a live server."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from io import BytesIO
from typing import Any

import pytest

from tests.conftest import run_enqueued
from tests.fakes.llm_server import finish, tool_call
from tests.live_server import live_server

ADMIN_KEY = "tb_admin_" + "a" * 32
ERROR_CODES = {"401", "404", "413", "422", "429"}
# the generator reads only a few media types; these say how to treat ours (its documented knob)
GENERATOR_CONFIG = """\
content_type_overrides:
  application/pdf: application/octet-stream
  application/yaml: application/octet-stream
"""


def _spec() -> dict[str, Any]:
    from app.main import create_app

    return create_app(sweeper=False).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items()
            for method, op in item.items()]


def test_every_operation_is_named_and_documents_its_errors(env):
    # given the document the API serves
    spec = _spec()
    operations = _operations(spec)
    # then operation ids are the handlers' names, each used once
    ids = [op["operationId"] for _m, _p, op in operations]
    assert len(ids) == len(set(ids))
    assert {"create_task", "upload_files", "download_artifact", "report_pdf",
            "upload_agent_task_artifacts", "download_agent_task_artifact"} <= set(ids)
    # and every route but the public health check documents 401/404/413/422/429 with a body
    for method, path, op in operations:
        expected = {"413"} if path == "/api/v1/health" else ERROR_CODES
        assert expected <= set(op["responses"]), (method, path)
        for code in expected:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (method, path, code)


def test_files_are_binary_both_ways(env):
    spec = _spec()
    schemas = spec["components"]["schemas"]
    # file fields of multipart bodies are binary strings
    assert schemas["Body_upload_files"]["properties"]["files"]["items"]["format"] == "binary"
    assert schemas["Body_upload_agent_task_artifacts"]["properties"]["file"]["format"] == "binary"
    # and file answers say their media type and that they are binary
    paths = spec["paths"]
    report = paths["/api/v1/tasks/{task_id}/report.pdf"]["get"]["responses"]["200"]["content"]
    assert report == {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}
    download = paths["/api/v1/tasks/{task_id}/artifacts/{path}"]["get"]["responses"]["200"]
    assert download["content"]["application/octet-stream"]["schema"]["format"] == "binary"


@pytest.fixture
def generated(env, tmp_path, monkeypatch) -> Any:
    """A client generated from the API's own document, importable as `tbclient`."""
    (tmp_path / "openapi.json").write_text(json.dumps(_spec()))
    (tmp_path / "config.yaml").write_text(GENERATOR_CONFIG)
    subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json",
         "--output-path", "tbclient", "--meta", "none", "--config", "config.yaml"],
        cwd=tmp_path, check=True, capture_output=True, timeout=300)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "tbclient" or m.startswith("tbclient.")]:
        del sys.modules[name]
    return importlib.import_module("tbclient")


def _module(name: str) -> Any:
    return importlib.import_module(f"tbclient.{name}")


async def test_generated_client_uploads_and_downloads_files(generated, db, enqueued, llm):
    # given a model that copies the uploaded file into output/, and a live server
    llm.script(tool_call("read_file", path="input/brief.txt"),
               tool_call("write_file", path="output/copy.txt", content="from the brief"),
               finish("designed"), finish("built"), finish("tested"))
    types, models = _module("types"), _module("models")
    with live_server() as url:
        client = generated.AuthenticatedClient(base_url=url, token=ADMIN_KEY)
        create = _module("api.artifacts.create_task_with_files")
        # when the generated client submits a task with a file (multipart, binary)
        body = models.BodyCreateTaskWithFiles(
            task=json.dumps({"title": "copy the brief", "complexity": 1}),
            files=[types.File(payload=BytesIO(b"the brief"), file_name="brief.txt",
                              mime_type="text/plain")])
        made = await create.asyncio_detailed(client=client, body=body)
        assert made.status_code == 201, made.content
        task_id = made.parsed.id
        # and the Agent Protocol's upload keeps its folder (before the task ran)
        upload = _module("api.agent_protocol.upload_agent_task_artifacts")
        artifact = await upload.asyncio(str(task_id), client=client, body=(
            models.BodyUploadAgentTaskArtifacts(
                file=types.File(payload=BytesIO(b"more"), file_name="more.txt"),
                relative_path="notes")))
        assert artifact.relative_path == "notes" and artifact.file_name == "more.txt"
        await run_enqueued(enqueued)
        # then it downloads what the agent wrote, and the PDF report, as bytes
        download = _module("api.artifacts.download_artifact")
        got = await download.asyncio(task_id, "copy.txt", client=client)
        assert isinstance(got, types.File) and got.payload.read() == b"from the brief"
        report = await _module("api.artifacts.report_pdf").asyncio(task_id, client=client)
        assert isinstance(report, types.File) and report.payload.read().startswith(b"%PDF")
        # and a file sent to an ended task is a typed 409
        late = await upload.asyncio_detailed(str(task_id), client=client, body=(
            models.BodyUploadAgentTaskArtifacts(
                file=types.File(payload=BytesIO(b"late"), file_name="late.txt"))))
        assert late.status_code == 409 and "has ended" in late.parsed.detail


async def test_generated_client_reads_error_bodies(generated, db):
    models = _module("models")
    get_task = _module("api.tasks.get_task")
    create_task = _module("api.tasks.create_task")
    with live_server() as url:
        client = generated.AuthenticatedClient(base_url=url, token=ADMIN_KEY)
        anonymous = generated.AuthenticatedClient(base_url=url, token="tb_wrong_key_123456")
        # a task that does not exist, a refused key, and invalid input: each a typed error body
        missing = await get_task.asyncio_detailed(999999, client=client)
        assert missing.status_code == 404 and "not found" in missing.parsed.detail
        refused = await get_task.asyncio_detailed(1, client=anonymous)
        assert refused.status_code == 401 and isinstance(refused.parsed, models.ErrorBody)
        bad = await create_task.asyncio_detailed(client=client, body=models.TaskCreate.from_dict(
            {"title": "x", "complexity": 99}))
        assert bad.status_code == 422 and isinstance(bad.parsed, models.ErrorBody)
        assert "complexity" in json.dumps(bad.parsed.to_dict())
