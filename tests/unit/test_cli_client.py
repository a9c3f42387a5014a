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


@pytest.mark.parametrize("argv", [["submit", "hello"], ["tasks", "list"], ["tasks", "show", "3"]])
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
