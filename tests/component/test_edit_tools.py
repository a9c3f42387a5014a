"""view_file, edit_file, insert_lines, undo_edit: exact edits, clear refusals, diffs, undo."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from app.core.config import get_settings
from app.sandbox.workspace import Workspace
from app.tools import dispatch
from app.tools.undo import UndoStore
from tests.conftest import run_enqueued
from tests.factories.loop import Router, dashboard_page, events_of, requests_about
from tests.fakes.llm_server import finish, tool_call
from tests.fakes.tool_context import make_context

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


@pytest.fixture
def ws(tmp_path: Path):
    ctx, events = make_context(tmp_path / "ws")
    (ctx.workspace.src / "calc.py").write_text(SOURCE)
    return ctx


async def call(ctx, name, **args):
    return await dispatch(ctx, name, args, None)


def read(ctx, rel="src/calc.py") -> str:
    return (ctx.workspace.root / rel).read_text()


async def test_edit_replaces_the_unique_snippet_and_reports_a_diff(ws):
    # when a unique snippet is replaced
    result = await call(ws, "edit_file", path="src/calc.py", old="return a - b",
                        new="return a - b  # subtract")
    # then only it changed, the diff says so and the observation shows numbered lines
    assert result.ok, result.output
    assert read(ws) == SOURCE.replace("a - b", "a - b  # subtract")
    diff = result.data["diff"]
    assert "-    return a - b\n+    return a - b  # subtract" in diff
    assert diff.startswith("--- a/src/calc.py\n+++ b/src/calc.py")
    assert (result.data["added"], result.data["removed"]) == (1, 1)
    assert re.search(r"^6\t    return a - b  # subtract$", result.output, re.M)


async def test_edit_refuses_a_missing_snippet_showing_the_nearest_match(ws):
    # when `old` is not in the file (spaces differ)
    result = await call(ws, "edit_file", path="src/calc.py", old="    return a-b", new="x")
    assert not result.ok
    # then nothing changed and the error names the nearest lines with their numbers
    assert read(ws) == SOURCE
    assert "not found" in result.output and "lines 6-6" in result.output
    assert re.search(r"^6\t    return a - b$", result.output, re.M)


async def test_edit_refuses_an_ambiguous_snippet_listing_each_line(ws):
    result = await call(ws, "edit_file", path="src/calc.py", old="(a, b):", new="(x, y):")
    assert not result.ok
    assert "occurs 2 times" in result.output and "at lines 1, 5" in result.output
    assert read(ws) == SOURCE


async def test_edit_with_count_replaces_every_occurrence(ws):
    result = await call(ws, "edit_file", path="src/calc.py", old="(a, b):", new="(x, y):",
                        count=2)
    assert result.ok, result.output
    assert read(ws).count("(x, y):") == 2


@pytest.mark.parametrize("args, message", [
    ({"old": "", "new": "x"}, "must not be empty"),
    ({"old": "add", "new": "add"}, "the same"),
    ({"old": "add", "new": "x", "count": 0}, "at least 1"),
])
async def test_edit_refuses_pointless_calls(ws, args, message):
    result = await call(ws, "edit_file", path="src/calc.py", **args)
    assert not result.ok and message in result.output
    assert read(ws) == SOURCE


async def test_edit_refuses_missing_binary_and_escaping_files(ws):
    (ws.workspace.root / "output" / "blob.bin").write_bytes(b"\x00\x01abc")
    missing = await call(ws, "edit_file", path="src/nope.py", old="a", new="b")
    binary = await call(ws, "edit_file", path="output/blob.bin", old="abc", new="x")
    outside = await call(ws, "edit_file", path="../escape.py", old="a", new="b")
    assert "no such file" in missing.output
    assert "binary" in binary.output
    assert outside.refused and "'..'" in outside.output


async def test_edit_never_writes_through_links(ws, tmp_path):
    # given a file outside the workspace, reached by a symlink and a hard link planted inside
    secret = tmp_path / "secret.txt"
    secret.write_text("token=abc\n")
    os.symlink(secret, ws.workspace.src / "link.txt")
    os.link(secret, ws.workspace.src / "hard.txt")
    inner = ws.workspace.src / "inner.txt"
    inner.write_text("token=abc\n")
    # when the agent edits through them
    via_symlink = await call(ws, "edit_file", path="src/link.txt", old="abc", new="pwned")
    via_hardlink = await call(ws, "edit_file", path="src/hard.txt", old="abc", new="pwned")
    # then both are refused and the outside file is untouched
    assert via_symlink.refused and via_hardlink.refused, (via_symlink, via_hardlink)
    assert "hard links" in via_hardlink.output
    assert secret.read_text() == "token=abc\n"


async def test_edit_never_walks_through_a_linked_folder(ws, tmp_path):
    # given a folder inside the workspace reached through a symlinked folder
    (ws.workspace.src / "real").mkdir()
    (ws.workspace.src / "real" / "a.py").write_text("x = 1\n")
    os.symlink(ws.workspace.src / "real", ws.workspace.src / "alias")
    # when the agent edits through the link, then it is refused and the file is unchanged
    result = await call(ws, "edit_file", path="src/alias/a.py", old="x = 1", new="x = 2")
    assert result.refused and "is a symlink; the host does not follow" in result.output
    assert (ws.workspace.src / "real" / "a.py").read_text() == "x = 1\n"
    direct = await call(ws, "edit_file", path="src/real/a.py", old="x = 1", new="x = 2")
    assert direct.ok


async def test_edit_refuses_a_fifo_without_blocking(ws):
    os.mkfifo(ws.workspace.src / "pipe")
    result = await call(ws, "edit_file", path="src/pipe", old="a", new="b")
    assert result.refused and "is a fifo" in result.output


async def test_view_file_numbers_the_requested_lines(ws):
    result = await call(ws, "view_file", path="src/calc.py", start=5, end=6)
    assert result.ok
    assert result.output.splitlines() == ["src/calc.py lines 5-6 of 6:",
                                          "5\tdef sub(a, b):", "6\t    return a - b"]
    whole = await call(ws, "view_file", path="src/calc.py")
    assert "lines 1-6 of 6" in whole.output and "1\tdef add(a, b):" in whole.output
    past = await call(ws, "view_file", path="src/calc.py", start=9)
    backwards = await call(ws, "view_file", path="src/calc.py", start=4, end=2)
    assert "past the end" in past.output and "bad range" in backwards.output


async def test_view_file_bounds_long_files(ws):
    (ws.workspace.src / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    result = await call(ws, "view_file", path="src/long.txt")
    assert "lines 1-400 of 1000" in result.output and "[lines 401-1000 not shown]" in result.output
    assert "401\tline 401" not in result.output


async def test_insert_lines_at_top_middle_and_end(ws):
    top = await call(ws, "insert_lines", path="src/calc.py", line=0, text='"""Calc."""')
    assert top.ok and read(ws).startswith('"""Calc."""\ndef add')
    mid = await call(ws, "insert_lines", path="src/calc.py", line=3, text="    # end\n")
    assert mid.ok and read(ws).splitlines()[3] == "    # end"
    total = len(read(ws).splitlines())
    end = await call(ws, "insert_lines", path="src/calc.py", line=total, text="X = 1")
    assert end.ok and read(ws).endswith("a - b\nX = 1")
    bad = await call(ws, "insert_lines", path="src/calc.py", line=total + 5, text="y")
    assert not bad.ok and f"between 0 and {total + 1}" in bad.output


async def test_insert_after_a_last_line_without_newline(ws):
    (ws.workspace.src / "n.txt").write_text("a\nb")
    result = await call(ws, "insert_lines", path="src/n.txt", line=2, text="c")
    assert result.ok and read(ws, "src/n.txt") == "a\nb\nc"


async def test_undo_restores_versions_in_reverse_order(ws):
    await call(ws, "edit_file", path="src/calc.py", old="a + b", new="a + b + 0")
    await call(ws, "insert_lines", path="src/calc.py", line=0, text="# header")
    first = await call(ws, "undo_edit", path="./src/calc.py")  # the same file, spelled otherwise
    assert first.ok and read(ws) == SOURCE.replace("a + b", "a + b + 0")
    assert first.data["undo_left"] == 1 and "-# header" in first.data["diff"]
    second = await call(ws, "undo_edit", path="src/calc.py")
    assert second.ok and read(ws) == SOURCE
    nothing = await call(ws, "undo_edit", path="src/calc.py")
    assert not nothing.ok and "no edit of src/calc.py to undo" in nothing.output


def test_undo_store_is_bounded_per_file_and_in_total(tmp_path):
    store = UndoStore(tmp_path / "undo", per_file=2, max_bytes=10)
    for version in ("1", "2", "3"):
        store.push("a", version)
    assert store.depth("a") == 2  # "1" dropped
    store.push("b", "x" * 10)  # over 10 bytes in all: a's oldest versions go first
    assert store.depth("a") == 0 and store.pop("b") == "x" * 10 and store.pop("b") is None


async def test_undo_survives_a_new_run_and_lives_outside_the_workspace(ws, tmp_path):
    # given an edit made in one run of the task
    await call(ws, "edit_file", path="src/calc.py", old="a - b", new="b - a")
    # when the task resumes in a new run (a fresh context on the same workspace)
    resumed, _events = make_context(ws.workspace.root)
    result = await call(resumed, "undo_edit", path="src/calc.py")
    # then the edit can still be undone, and nothing of the history is inside the workspace
    assert result.ok and read(ws) == SOURCE
    assert UndoStore.beside(ws.workspace).directory.parent == ws.workspace.root.parent
    assert not any(".undo" in str(p) for p in ws.workspace.root.rglob("*"))


async def test_scripted_agent_edits_and_the_dashboard_shows_the_diff(app_client, enqueued, llm):
    # given a model that writes a file, edits it, then finishes
    llm.responder = Router().script(
        "tidy",
        tool_call("write_file", path="src/hello.py", content="print('helo')\n"),
        tool_call("edit_file", path="src/hello.py", old="'helo'", new="'hello'"),
        finish("fixed the typo"),
    )
    created = await app_client.post("/tasks", json={"title": "tidy", "complexity": 2})
    task_id = created.json()["id"]
    # when it runs
    await run_enqueued(enqueued)
    # then the edit's tool_call event carries the diff
    edits = [e for e in await events_of(app_client, task_id, "tool_call")
             if e["data"]["tool"] == "edit_file"]
    assert edits and edits[0]["data"]["ok"], edits
    assert "-print('helo')\n+print('hello')" in edits[0]["data"]["data"]["diff"]
    # and the dashboard's task page renders it as a diff block
    page = await dashboard_page(app_client, f"/tasks/{task_id}")
    assert '<pre class="diff">' in page
    assert "<span class=\"d-add\">+print(&#39;hello&#39;)</span>" in page


def last_tool_output(request) -> str:
    """What the model was shown for its previous tool call (the last tool message)."""
    return next(m["content"] for m in reversed(request["messages"]) if m["role"] == "tool")


async def test_scripted_agent_sees_refusals_views_inserts_and_undoes(app_client, enqueued, llm):
    # given a model that makes a file, misquotes it, views it, inserts a line and undoes that
    llm.responder = Router().script(
        "careful",
        tool_call("write_file", path="src/calc.py", content=SOURCE),
        tool_call("edit_file", path="src/calc.py", old="return a+b", new="return b + a"),
        tool_call("view_file", path="src/calc.py", start=1, end=2),
        tool_call("edit_file", path="src/calc.py", old="return a + b", new="return b + a"),
        tool_call("insert_lines", path="src/calc.py", line=0, text="# oops"),
        tool_call("undo_edit", path="src/calc.py"),
        finish("edited"),
    )
    created = await app_client.post("/tasks", json={"title": "careful", "complexity": 2})
    # when it runs
    await run_enqueued(enqueued)
    # then each next request showed the model what its call did
    sent = requests_about(llm.requests, "careful")
    refusal, view, edit, insert, undo = (last_tool_output(r) for r in sent[2:7])
    assert refusal.startswith("Error: `old` was not found in src/calc.py")
    assert "nearest text is lines 2-2" in refusal and "2\t    return a + b" in refusal
    assert view == "src/calc.py lines 1-2 of 6:\n1\tdef add(a, b):\n2\t    return a + b" \
        "\n…[lines 3-6 not shown]"
    assert edit.startswith("Replaced 1 occurrence in src/calc.py")
    assert "Inserted 1 line(s) after line 0" in insert
    assert undo.startswith("Restored the previous version in src/calc.py")
    # and the file holds the edit without the undone insertion
    task = (await app_client.get(f"/tasks/{created.json()['id']}")).json()
    assert task["status"] == "completed", task
    ws = Workspace.for_task(get_settings().workspaces_dir, task["agent"], task["id"])
    assert (ws.src / "calc.py").read_text() == SOURCE.replace("return a + b", "return b + a")
    calls = [e["data"] for e in await events_of(app_client, task["id"], "tool_call")]
    assert [c["tool"] for c in calls[1:6]] == ["edit_file", "view_file", "edit_file",
                                              "insert_lines", "undo_edit"]
    assert [c["ok"] for c in calls[1:6]] == [False, True, True, True, True]
    assert "+# oops" in calls[4]["data"]["diff"] and "-# oops" in calls[5]["data"]["diff"]
