"""The CLI's argument checks and one-line errors (no traceback, no raw JSON)."""

import socket

import httpx
import pytest

from app.ops.api_errors import refusal
from app.ops.cli import build_parser, main


def test_complexity_zero_is_an_error_not_a_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["submit", "t", "--complexity", "0"])
    assert exc.value.code == 2
    assert "outside 1..10" in capsys.readouterr().err
    assert build_parser().parse_args(["submit", "t", "--complexity", "10"]).complexity == 10


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.startswith("taskbench ")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [["submit", "hello"], ["tasks", "list"], ["tasks", "show", "3"]])
def test_api_down_is_one_line_naming_the_url(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main([*argv, "--api", url, "--key", "k"]) == 1
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
