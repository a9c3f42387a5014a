"""Allow-list bypasses (issue 11, kind 8): options that make an allowed program run another,
load a configuration or reach another repository — in full, abbreviated or clustered — and a
git configuration planted in the workspace. Each test is a real attempt through run_command or
the file tools, asserting the refusal (or that nothing planted ran)."""

from __future__ import annotations

import shutil

import pytest

from app.tools.registry import dispatch
from tests.security.test_attacks import agent, cmd  # noqa: F401  (the fixture and helper)

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")


@pytest.mark.parametrize("command, why", [
    # git: programs named by option, in full and abbreviated
    ("git --upload-pa=touch clone x y", "before the subcommand"),
    ("git clone --upload-pa=touch x y", "--upload-pack"),
    ("git fetch --upload-p=sh origin", "--upload-pack"),
    ("git ls-remote -u sh origin", "-u"),
    ("git push --receive-pa=x origin", "--receive-pack"),
    ("git archive --exe=sh --remote=x HEAD", "--exec"),
    ("git rebase -x 'touch x' HEAD", "-x"),
    ("git rebase --exe=touch HEAD", "--exec"),
    ("git grep --open-files-in-pager=sh foo", "--open-files-in-pager"),
    ("git grep --open foo", "--open-files-in-pager"),
    ("git grep -Osh foo", "-O"),
    ("git grep -iO foo", "-O"),
    # git: configuration and other repositories before the subcommand
    ("git -c core.pager=sh log", "git -c"),
    ("git -ccore.fsmonitor=x status", "git -ccore.fsmonitor"),
    ("git --config-env=core.pager=X log", "--config-env"),
    ("git --git-dir=/tmp/evil status", "--git-dir"),
    ("git --work-tree=/ status", "--work-tree"),
    ("git --exec-path=/tmp log", "--exec-path"),
    ("git --namespace=x log", "--namespace"),
    ("git -p log", "git -p"),
    ("git --paginate log", "--paginate"),
    ("git -C /etc status", "inside the workspace"),
    ("git -C ../other-task status", "inside the workspace"),
    ("git -C .git status", "inside the workspace"),
    # git: configuration through the subcommand
    ("git clone -c core.fsmonitor=x a b", "-c"),
    ("git clone --config core.fsmonitor=x a b", "--config"),
    ("git clone --conf=core.fsmonitor=x a b", "--config"),
    ("git init --templ=/tmp/t", "--template"),
    ("git config alias.lg '!sh -c id'", "alias."),
    ("git config pager.log sh", "pager."),
    ("git config --file=.git/config core.x y", "own settings"),
    ("git config --blob=HEAD:x core.x", "own settings"),
    # git: commands that are not git's own (aliases) or that run programs
    ("git lg", "aliases are not allowed"),
    ("git difftool", "not allowed"),
    ("git submodule foreach id", "not allowed"),
    ("git bisect run sh", "not allowed"),
    # sort: a compressor is a program
    ("sort --compress-program=sh x", "compress-program"),
    ("sort --compress-prog=sh x", "compress-program"),
    ("sort --compress=sh x", "compress-program"),
    # file commands writing git's metadata
    ("cp evil .git/config", ".git/"),
    ("mv hook .git/hooks/pre-commit", ".git/"),
    ("touch .git/hooks/post-checkout", ".git/"),
    ("mkdir -p src/.git/hooks", ".git/"),
    # file commands: the metadata folder named inside an option
    ("cp evil --target-directory=.git/hooks", ".git/"),
    ("cp -t.git/hooks evil", ".git/"),
    ("mv --target-directory=.git evil", ".git/"),
    # git config: the key after another word, and program-valued keys of other sections
    ("git config --type bool alias.x '!sh'", "alias.x"),
    ("git config --default x core.pager sh", "core.pager"),
    ("git config browser.evil.cmd 'touch x'", "browser."),
    ("git config web.browser evil", "web."),
    ("git config trailer.sign.cmd 'touch x'", "trailer."),
    ("git config x.y.cmd 'touch x'", "x.y.cmd"),
    # make: the shell through other assignment operators, --eval abbreviated
    ("make SHELL:=/bin/sh", "make SHELL="),
    ("make SHELL::=/bin/sh", "make SHELL="),
    ("make SHELL+=-x", "make SHELL="),
    ("make .SHELLFLAGS?=-c", "make .SHELLFLAGS="),
    ("make --eva=x:;touch", "--eval"),
    ("make --ev x", "--eval"),
    ("make -Ex", "--eval"),
    # output files inside git's metadata: sort -o, git --output / format-patch -o
    ("sort -o .git/config x.txt", ".git/"),
    ("sort --output=.git/hooks/pre-commit x.txt", ".git/"),
    ("sort -o.git/config x.txt", ".git/"),
    ("git log --output=.git/config", "own metadata"),
    ("git diff --output .git/hooks/pre-commit", "own metadata"),
    ("git format-patch -o .git/hooks HEAD", "own metadata"),
])
async def test_option_that_runs_or_reconfigures_is_refused(agent, command, why) -> None:  # noqa: F811
    ctx, events, _ = agent
    out = await cmd(ctx, command)
    assert out.refused, out.output
    assert why in out.output
    assert events.of("tool_refused")[-1]["tool"] == "run_command"


async def test_a_nul_byte_in_a_command_is_a_clear_refusal(agent) -> None:  # noqa: F811
    ctx, _, _ = agent
    out = await cmd(ctx, "ls\x00 -la /")
    assert out.refused and "NUL byte" in out.output


@pytest.mark.parametrize("path", [".git/config", ".git/hooks/pre-commit", "src/.git/config"])
async def test_the_file_tools_do_not_write_git_metadata(agent, path) -> None:  # noqa: F811
    ctx, _, _ = agent
    out = await dispatch(ctx, "write_file", {"path": path, "content": "[core]\n"}, None)
    assert out.refused and "git's to write" in out.output
    assert not (ctx.workspace.root / path).exists()


async def test_an_edit_of_git_metadata_is_refused(agent) -> None:  # noqa: F811
    ctx, _, _ = agent
    assert (await cmd(ctx, "git init -q")).ok
    out = await dispatch(ctx, "edit_file", {"path": ".git/config", "old": "[core]",
                                            "new": "[core]\n\tfsmonitor = touch pwned"}, None)
    assert out.refused and "git's to write" in out.output
    assert "fsmonitor" not in (ctx.workspace.root / ".git" / "config").read_text()


async def test_a_planted_git_config_runs_nothing_under_allowed_git_commands(agent) -> None:  # noqa: F811
    # given a repository whose config a program (python, allowed by default) rewrote with an
    # fsmonitor, a hooks path, a pager, an editor and an ssh command that all touch a marker
    ctx, _, _ = agent
    assert (await cmd(ctx, "git init -q")).ok
    planter = (
        "import os\n"
        "cfg = open('.git/config', 'a')\n"
        "cfg.write('[core]\\n\\tfsmonitor = touch PWNED-fsmonitor\\n\\thooksPath = hooks\\n'\n"
        "          '\\tpager = touch PWNED-pager\\n\\teditor = touch PWNED-editor\\n'\n"
        "          '\\tsshCommand = touch PWNED-ssh\\n'\n"
        "          '[diff]\\n\\texternal = touch PWNED-diff\\n')\n"
        "cfg.close()\n"
        "os.makedirs('hooks', exist_ok=True)\n"
        "for name in ('pre-commit', 'post-commit', 'post-checkout'):\n"
        "    open('hooks/' + name, 'w').write('#!/bin/sh\\ntouch PWNED-' + name + '\\n')\n"
        "    os.chmod('hooks/' + name, 0o755)\n"
        "open('a.txt', 'w').write('a')\n"
    )
    out = await dispatch(ctx, "write_file", {"path": "plant.py", "content": planter}, None)
    assert out.ok
    planted = await cmd(ctx, "python3 plant.py")
    assert planted.output.startswith("exit code 0"), planted.output
    # when allowed git commands run on it
    results = {}
    for command in ("git config user.name Agent", "git config user.email agent@example.com",
                    "git status", "git add a.txt",
                    "git commit -qm x --author 'x <x@x>'", "git log -p", "git diff HEAD~0"):
        results[command] = await cmd(ctx, command)
    assert all(r.ok and not r.refused for r in results.values()), \
        {c: r.output[:300] for c, r in results.items()}
    assert "exit code 0" in results["git commit -qm x --author 'x <x@x>'"].output
    # then nothing planted ran
    planted = sorted(p.name for p in ctx.workspace.root.iterdir() if p.name.startswith("PWNED"))
    assert planted == []


async def test_a_planted_alias_is_not_reachable(agent) -> None:  # noqa: F811
    ctx, _, _ = agent
    assert (await cmd(ctx, "git init -q")).ok
    out = await dispatch(ctx, "write_file", {"path": "plant.py", "content": (
        "open('.git/config', 'a').write('[alias]\\n\\tst = !touch PWNED\\n')\n")}, None)
    assert out.ok
    planted = await cmd(ctx, "python3 plant.py")
    assert planted.output.startswith("exit code 0"), planted.output
    out = await cmd(ctx, "git st")
    assert out.refused and "aliases are not allowed" in out.output
    assert not (ctx.workspace.root / "PWNED").exists()


@pytest.mark.parametrize("command", ["git -C src status", "git log -p", "git status -s",
                                     "git format-patch --to=a@example.com -1",
                                     "git rev-parse --git-dir", "git branch --contains HEAD",
                                     "git --no-pager log", "sort -r x.txt"])
async def test_ordinary_commands_are_not_refused(agent, command) -> None:  # noqa: F811
    ctx, _, _ = agent
    (ctx.workspace.root / "src").mkdir(exist_ok=True)
    (ctx.workspace.root / "x.txt").write_text("b\na\n")
    await cmd(ctx, "git init -q")
    out = await cmd(ctx, command)
    assert not out.refused, out.output
