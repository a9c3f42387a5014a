"""The CLI's argument checks and one-line errors (no traceback, no raw JSON)."""

import socket

import httpx
import pytest

from app.ops.api_errors import refusal
from app.ops.cli import main
from app.ops.cli.remote import local_path


def test_complexity_zero_is_an_error_not_a_default(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["submit", "t", "--complexity", "0", "--api", url, "--key", "k"]) == 2
    err = capsys.readouterr().err
    assert "--complexity" in err and "1<=x<=10" in err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("taskbench ")


@pytest.mark.parametrize("argv", [["submit"], ["answer", "3"], ["tasks", "logs"],
                                  ["tasks", "download", "x"]])
def test_missing_or_bad_arguments_are_usage_errors(argv: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_every_command_and_option_has_help() -> None:
    import typer

    from app.ops.cli import app

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    missing = []
    for path, cmd in walk(typer.main.get_command(app), []):
        if path and not (cmd.help or "").strip():
            missing.append(" ".join(path))
        for param in cmd.params:
            if param.param_type_name == "option" and not (getattr(param, "help", "") or ""):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "a/../../b",
                                     "..", "./.", "a\\..\\..\\x"])
def test_a_downloaded_file_never_lands_outside_the_folder(tmp_path, hostile: str) -> None:
    from app.ops.api_errors import CliError

    try:
        target = local_path(tmp_path, hostile)
    except CliError:
        return
    assert target.is_relative_to(tmp_path.resolve())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [
    ["submit", "hello"], ["answer", "3", "yes"], ["tasks", "list"], ["tasks", "show", "3"],
    ["tasks", "cancel", "3"], ["tasks", "logs", "3"], ["tasks", "logs", "3", "--follow"],
    ["tasks", "artifacts", "3"], ["tasks", "download", "3"], ["scenario", "run", "x"]])
def test_api_down_is_one_line_naming_the_url(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main([*argv, "--api", url, "--key", "k"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and url in err and "taskbench up" in err
    assert "Traceback" not in err


def test_refusal_shows_the_api_message_not_json() -> None:
    resp = httpx.Response(422, json={"detail": [{"loc": ["body", "complexity"],
                                                 "msg": "must be <= 10"}]})
    assert str(refusal(resp)) == "refused (422): complexity: must be <= 10"
    assert str(refusal(httpx.Response(404, json={"detail": "task not found"}))) == \
        "refused (404): task not found"


def test_up_on_a_busy_port_says_which_and_how_to_choose(
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["up", "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"port {port}" in err and "--port" in err and err.count("\n") == 0


def test_a_dropped_stream_resumes_after_the_last_event_seen(
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.ops.cli.follow import follow

    # given an API whose event stream breaks after the first event
    def sse(*events: dict) -> list[bytes]:
        return [f"id: {e['seq']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]

    first = {"seq": 1, "type": "tool_call", "data": {"tool": "write_file", "output": "wrote a"}}
    second = {"seq": 2, "type": "tool_call", "data": {"tool": "read_file", "output": "read b"}}
    done = {"seq": 3, "type": "status", "data": {"status": "completed"}}
    asked_after: list[str] = []

    def broken(chunks: list[bytes]):  # type: ignore[no-untyped-def]
        yield from chunks
        raise httpx.ReadError("connection reset")

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/events"):
            asked_after.append(req.headers["Last-Event-ID"])
            if len(asked_after) == 1:
                return httpx.Response(200, content=broken(sse(first)))
            return httpx.Response(200, content=b"".join(sse(second, done)))
        if req.url.path.endswith("/artifacts"):
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"id": 7, "status": "completed", "summary": "all done"})

    client = httpx.Client(base_url="http://api.test/api/v1",
                          transport=httpx.MockTransport(handler))
    # when the task is followed
    code = follow(client, 7, "http://api.test")
    # then it reconnected once from event 1, showed each event once, and ended with exit 0
    out = capsys.readouterr().out
    assert asked_after == ["0", "1"]
    assert out.count("write_file") == 1 and out.count("read_file") == 1
    assert "task 7 completed" in out and code == 0


def test_a_failed_task_followed_to_the_end_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.ops.cli.follow import follow

    # given a task whose stream ends in `failed`
    events = [{"seq": 1, "type": "provider_error", "data": {"error": "invalid key"}},
              {"seq": 2, "type": "status", "data": {"status": "failed", "reason": "provider"}}]
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/events"):
            return httpx.Response(200, content=body)
        if req.url.path.endswith("/artifacts"):
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"id": 8, "status": "failed", "error": "invalid key"})

    client = httpx.Client(base_url="http://api.test/api/v1",
                          transport=httpx.MockTransport(handler))
    # when it is followed, then the exit code is 1 and the reason is shown
    assert follow(client, 8, "http://api.test") == 1
    out = capsys.readouterr().out
    assert "task 8 failed" in out and "invalid key" in out


def test_ctrl_c_stops_following_without_cancelling(capsys: pytest.CaptureFixture[str]) -> None:
    from app.ops.cli.follow import follow

    # given a stream the person interrupts with Ctrl-C
    seen: list[str] = []

    def interrupted():  # type: ignore[no-untyped-def]
        yield b": keep-alive\n\n"
        raise KeyboardInterrupt

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(f"{req.method} {req.url.path}")
        if req.url.path.endswith("/events"):
            return httpx.Response(200, content=interrupted())
        return httpx.Response(200, json={"id": 9, "status": "running"})

    client = httpx.Client(base_url="http://api.test/api/v1",
                          transport=httpx.MockTransport(handler))
    # when it is followed, then following stops with how to resume, and nothing was cancelled
    assert follow(client, 9, "http://api.test") == 130
    assert "taskbench tasks logs 9 --follow" in capsys.readouterr().out
    assert seen == ["GET /api/v1/tasks/9", "GET /api/v1/tasks/9/events"]


def _serving(files: dict[str, bytes]) -> httpx.MockTransport:
    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path.removeprefix("/api/v1/tasks/4")
        if path == "/artifacts":
            listing = [{"path": p, "bytes": len(b)} for p, b in files.items()]
            return httpx.Response(200, json=listing)
        name = path.removeprefix("/artifacts/").removeprefix("/")
        return httpx.Response(200, content=files.get(name, b"%PDF-1.7"))
    return httpx.MockTransport(handler)


def test_download_keeps_hostile_names_inside_the_folder(tmp_path, monkeypatch) -> None:
    from app.ops.cli import remote

    # given a server that names its files to climb out of the folder
    files = {"../../escaped.txt": b"no", "/etc/cron.d/x": b"no", "ok/notes.md": b"yes"}
    monkeypatch.setattr(remote, "client", lambda *a, **k: httpx.Client(
        base_url="http://api.test/api/v1", transport=_serving(files)))
    out = tmp_path / "out"
    # when the task's files are downloaded
    assert main(["tasks", "download", "4", "--out", str(out), "--key", "k"]) == 0
    # then every file landed under --out, and nothing was written beside it
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["escaped.txt", "etc/cron.d/x", "ok/notes.md", "report.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_download_one_path_only(tmp_path, monkeypatch, capsys) -> None:
    from app.ops.cli import remote

    # given a task with two files
    files = {"a.txt": b"A", "b.txt": b"B"}
    monkeypatch.setattr(remote, "client", lambda *a, **k: httpx.Client(
        base_url="http://api.test/api/v1", transport=_serving(files)))
    # when one is asked for, then only it is saved; an unknown one is a one-line error
    assert main(["tasks", "download", "4", "b.txt", "--out", str(tmp_path), "--key", "k"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
    assert main(["tasks", "download", "4", "zz.txt", "--out", str(tmp_path), "--key", "k"]) == 1
    assert "no file 'zz.txt'" in capsys.readouterr().err


def test_logs_pages_through_a_long_log(capsys: pytest.CaptureFixture[str]) -> None:
    from app.ops.cli.follow import follow

    # given a task with 1,500 events, served 1,000 at most per page like the API
    log = [{"seq": n, "type": "tool_call", "data": {"tool": f"t{n}", "output": ""}}
           for n in range(1, 1501)]

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/events"):
            after, limit = int(req.url.params["after"]), int(req.url.params["limit"])
            return httpx.Response(200, json={"data": [e for e in log if e["seq"] > after][:limit]})
        if req.url.path.endswith("/artifacts"):
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"id": 5, "status": "completed"})

    client = httpx.Client(base_url="http://api.test/api/v1",
                          transport=httpx.MockTransport(handler))
    # when its logs are read, then every event is shown once, the last one included
    assert follow(client, 5, "http://api.test", live=False) == 0
    out = capsys.readouterr().out
    assert "✓ t1500" in out and out.count("✓ t") == 1500
