"""fetch_url, web_search, pip_install and run_python happy paths, plus the fetch attacks."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

import app.tools  # noqa: F401  (registers the tools)
from app.core.config import Settings
from app.sandbox.netguard import is_public
from app.tools.registry import dispatch
from tests.fakes.search_server import SearchServer
from tests.fakes.tool_context import make_context
from tests.fakes.web_server import WebServer


@pytest.fixture
def web():
    srv = WebServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def other_web():
    srv = WebServer().start()
    yield srv
    srv.stop()


def ctx_for(tmp_path: Path, **settings):
    return make_context(tmp_path / "ws", settings=Settings(var_dir=tmp_path / "var", **settings))


async def test_fetch_saves_text_and_records_citation(tmp_path: Path, web: WebServer) -> None:
    ctx, events = ctx_for(tmp_path, fetch_allow_hosts=[f"127.0.0.1:{web.port}"])
    out = await dispatch(ctx, "fetch_url", {"url": web.url("/article")}, None)
    assert out.ok, out.output
    assert "Namespaces & limits" in out.output and "do-not-show" not in out.output
    cite = events.of("citation")[0]
    assert cite["title"] == "Bubblewrap notes" and cite["url"] == web.url("/article")
    saved = ctx.workspace.root / cite["path"]
    assert saved.name.startswith("001-bubblewrap-notes") and "Jails" in saved.read_text()


async def test_fetch_size_capped(tmp_path: Path, web: WebServer) -> None:
    ctx, _ = ctx_for(tmp_path, fetch_allow_hosts=[f"127.0.0.1:{web.port}"],
                     fetch_max_bytes=100_000)
    out = await dispatch(ctx, "fetch_url", {"url": web.url("/big")}, None)
    assert out.ok and out.data["bytes"] == 100_000


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/", "http://localhost/", "file:///etc/passwd", "ftp://example.org/",
    "http://user:pw@example.org/", "http://0.0.0.0/", "http://[fd00:ec2::254]/",
])
async def test_fetch_refuses_private_and_odd_urls(tmp_path: Path, url: str) -> None:
    ctx, events = ctx_for(tmp_path)
    out = await dispatch(ctx, "fetch_url", {"url": url}, None)
    assert out.refused, out.output
    assert events.of("tool_refused") and not events.of("citation")


async def test_fetch_refuses_name_resolving_to_private(tmp_path: Path, web: WebServer) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"] if host == "evil.example" else []

    ctx, _ = ctx_for(tmp_path)
    ctx.services.resolver = resolver
    out = await dispatch(ctx, "fetch_url", {"url": "http://evil.example/x"}, None)
    assert out.refused and "10.0.0.7" in out.output


async def test_fetch_redirect_to_private_refused(tmp_path: Path, web: WebServer,
                                                 other_web: WebServer) -> None:
    # given the first hop is allowed ("public" for the test) and redirects to another port
    web.redirect_to = other_web.url("/article")
    ctx, events = ctx_for(tmp_path, fetch_allow_hosts=[f"127.0.0.1:{web.port}"])
    # when / then
    out = await dispatch(ctx, "fetch_url", {"url": web.url("/redirect")}, None)
    assert out.refused and "non-public" in out.output
    assert other_web.requests == [] and not events.of("citation")


async def test_fetch_follows_allowed_redirect(tmp_path: Path, web: WebServer) -> None:
    ctx, _ = ctx_for(tmp_path, fetch_allow_hosts=[f"127.0.0.1:{web.port}"])
    out = await dispatch(ctx, "fetch_url", {"url": web.url("/redirect")}, None)
    assert out.ok and out.data["url"] == web.url("/article")


def test_is_public() -> None:
    assert is_public("93.184.216.34") and is_public("2606:2800:220:1::1")
    for ip in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254",
               "::1", "fe80::1", "224.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "100.64.0.1"):
        assert not is_public(ip), ip


async def test_search_searxng_cached_and_recorded(tmp_path: Path) -> None:
    srv = SearchServer().start()
    try:
        ctx, events = ctx_for(tmp_path, search_backend="searxng", searxng_url=srv.url)
        first = await dispatch(ctx, "web_search", {"query": "bwrap uid", "max_results": 2}, None)
        second = await dispatch(ctx, "web_search", {"query": "bwrap uid", "max_results": 2}, None)
    finally:
        srv.stop()
    assert first.ok and "bwrap uid result 1" in first.output and first.data["count"] == 2
    assert second.data["cached"] and srv.queries == ["bwrap uid"]
    recorded = events.of("search")
    assert len(recorded) == 2 and recorded[0]["backend"] == "searxng"
    assert recorded[0]["results"][0] == {"title": "bwrap uid result 1",
                                         "url": "https://example.org/1",
                                         "snippet": "About bwrap uid, part 1."}


async def test_search_rate_limited(tmp_path: Path) -> None:
    srv = SearchServer().start()
    try:
        ctx, _ = ctx_for(tmp_path, search_backend="searxng", searxng_url=srv.url,
                         search_per_minute=2)
        ctx.task_id = 4242
        outs = [await dispatch(ctx, "web_search", {"query": f"q{i}"}, None) for i in range(3)]
    finally:
        srv.stop()
    assert [o.ok for o in outs] == [True, True, False] and "rate limit" in outs[2].output


@pytest.mark.parametrize("spec", ["https://evil/x.whl", "./pkg", "-e .", "--index-url=x",
                                  "pkg; python_version>'3'", "pkg @ file:///x", ""])
async def test_pip_policy_refuses(tmp_path: Path, spec: str) -> None:
    ctx, _ = ctx_for(tmp_path)
    out = await dispatch(ctx, "pip_install", {"packages": [spec]}, None)
    assert not out.ok


async def test_pip_deny_list(tmp_path: Path) -> None:
    ctx, events = ctx_for(tmp_path, pip_deny=["Evil_Pkg"])
    out = await dispatch(ctx, "pip_install", {"packages": ["evil-pkg==1.0"]}, None)
    assert out.refused and events.of("tool_refused")


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")
@pytest.mark.skipif(not _pypi_reachable(), reason="PyPI (pypi.org:443) is not reachable")
async def test_real_pip_install_then_use_in_jail(tmp_path: Path) -> None:
    ctx, events = ctx_for(tmp_path)
    out = await dispatch(ctx, "pip_install", {"packages": ["six==1.17.0"]}, None)
    assert out.ok, out.output
    run = await dispatch(ctx, "run_python", {"code": "import six, sys\nprint(six.__version__,"
                                             " sys.prefix)"}, None)
    assert run.ok and "1.17.0 /workspace/.venv" in run.output
    assert [e["status"] for e in events.of("pip_install")] == ["started", "finished"]


@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")
async def test_run_python_path_and_code(tmp_path: Path) -> None:
    ctx, _ = ctx_for(tmp_path)
    (ctx.workspace.src / "hello.py").write_text("print('hello from', __name__)")
    out = await dispatch(ctx, "run_python", {"path": "src/hello.py"}, None)
    assert out.ok and "hello from __main__" in out.output and out.data["exit_code"] == 0
    out = await dispatch(ctx, "run_python", {"code": "raise SystemExit(3)"}, None)
    assert out.data["exit_code"] == 3


# -- research beyond HTML: what fetch_url makes of each kind of body ---------------------------

async def _fetch(tmp_path: Path, web: WebServer, path: str, **settings):
    ctx, events = ctx_for(tmp_path, fetch_allow_hosts=[f"127.0.0.1:{web.port}"], **settings)
    out = await dispatch(ctx, "fetch_url", {"url": web.url(path)}, None)
    return ctx, events, out


async def test_a_pdf_is_read_page_by_page_and_saved_with_its_citation(tmp_path, web) -> None:
    ctx, events, out = await _fetch(tmp_path, web, "/report.pdf")
    assert out.ok, out.output
    assert "[page 1]" in out.output and "Revenue grew 12 percent" in out.output
    assert "[page 2]" in out.output and "Costs fell by 3 percent" in out.output
    assert "cite it as [1]" in out.output
    cite = events.of("citation")[0]
    assert (cite["n"], cite["kind"], cite["content_type"]) == (1, "pdf", "application/pdf")
    assert len(cite["sha256"]) == 64 and cite["bytes"] > 500
    original = ctx.workspace.root / cite["original"]
    assert original.suffix == ".pdf" and original.read_bytes().startswith(b"%PDF-")
    assert "Revenue grew" in (ctx.workspace.root / cite["path"]).read_text()


async def test_a_pdf_served_as_html_is_still_read_as_a_pdf(tmp_path, web) -> None:
    _ctx, events, out = await _fetch(tmp_path, web, "/disguised")
    assert out.ok and "Revenue grew 12 percent" in out.output
    assert "%PDF" not in out.output and "endobj" not in out.output
    assert events.of("citation")[0]["kind"] == "pdf"


@pytest.mark.parametrize(("path", "said"), [("/encrypted.pdf", "encrypted"),
                                            ("/broken.pdf", "could not be read")])
async def test_an_unreadable_pdf_is_said_so_not_dumped(tmp_path, web, path, said) -> None:
    _ctx, _events, out = await _fetch(tmp_path, web, path)
    assert out.ok, out.output
    assert said in out.output and "binary file" in out.output
    assert "garbage" not in out.output and "obj" not in out.output


async def test_json_is_previewed_as_data(tmp_path, web) -> None:
    ctx, events, out = await _fetch(tmp_path, web, "/data.json")
    assert "An object with 3 keys: name, count, readings" in out.output
    assert "readings: [{" in out.output and "(3 items)" not in out.output.split("readings")[0]
    cite = events.of("citation")[0]
    assert cite["kind"] == "json" and cite["original"].endswith(".json")


async def test_csv_is_previewed_with_its_row_count(tmp_path, web) -> None:
    _ctx, _events, out = await _fetch(tmp_path, web, "/table.csv")
    assert "CSV, 3 data rows × 2 columns." in out.output
    assert "Columns: city, population" in out.output and "Bergen | 291000" in out.output


async def test_a_binary_is_described_and_saved_never_dumped(tmp_path, web) -> None:
    ctx, events, out = await _fetch(tmp_path, web, "/image.png")
    assert "an image of 3×2 pixels" in out.output and "image/png" in out.output
    assert "PNG" not in out.output.split("\n", 2)[-1] and "IHDR" not in out.output
    cite = events.of("citation")[0]
    saved = ctx.workspace.root / cite["original"]
    assert saved.suffix == ".png" and saved.read_bytes().startswith(b"\x89PNG")


async def test_a_server_chosen_file_name_never_steers_the_save(tmp_path, web) -> None:
    ctx, events, out = await _fetch(tmp_path, web, "/download?name=../../x")
    assert out.ok, out.output
    cite = events.of("citation")[0]
    for key in ("path", "original"):
        assert cite[key].startswith("research/") and ".." not in cite[key]
    assert not (tmp_path / "etc").exists()
    assert sorted(p.parent for p in (ctx.workspace.root / "research").iterdir()) == \
        [ctx.workspace.root / "research"] * 2


async def test_a_dripping_server_cannot_hold_fetch_past_its_deadline(tmp_path, web) -> None:
    import time

    started = time.monotonic()
    _ctx, _events, out = await _fetch(tmp_path, web, "/drip", fetch_timeout_s=2.0)
    took = time.monotonic() - started
    assert not out.ok and "did not finish within 2 s" in out.output
    assert took < 10, f"fetch_url was held {took:.1f} s by a server sending 10 bytes/s"
