"""GitHub deliverables: clone the task's repository, open (or update) its pull request,
comment on the issue it came from, and turn an issue URL into a task.

    clone_for_task(task, workspace, settings)       prepare(): repo → workspace src/
    open_or_update_pr(task, workspace, settings, …) commit src/, push taskbench/task-<id>, PR
    comment_on_issue(task, settings, text)          one comment per task, edited on re-runs
    issue_to_task(url)                              (title, body) of a GitHub issue

PyGithub is synchronous, so its calls run in a thread. Every call goes to
settings.github_api_url (GitHub Enterprise works the same); the clone URL is the repository's
`clone_url` from that API. Re-running never duplicates: the PR is found by its head branch and
the issue comment by a marker, then edited.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from github import Auth, Github

from app.core.config import TEMPLATES_DIR, Settings, get_settings
from app.core.jinja import environment
from app.core.redact import redact
from app.integrations import gitops, links
from app.sandbox import fs
from app.sandbox.workspace import Workspace

ISSUE_URL = re.compile(
    r"^https?://[^/\s]+/(?:api/v3/)?(?:repos/)?"
    r"(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/issues/(?P<number>\d+)/?$"
)


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    url: str
    branch: str
    sha: str
    created: bool


def client(settings: Settings) -> Github:
    """A PyGithub client for the configured API (GitHub or a GHE base URL)."""
    auth = Auth.Token(settings.github_token) if settings.github_token else None
    return Github(auth=auth, base_url=settings.github_api_url.rstrip("/"), timeout=30, retry=None)


def branch_for(task_id: int) -> str:
    return f"taskbench/task-{int(task_id)}"


def mirror_for(task_id: int, settings: Settings) -> Path:
    return Path(settings.var_dir) / "git" / f"task-{int(task_id)}.git"


def _repo_info(settings: Settings, full_name: str) -> dict[str, str]:
    repo = client(settings).get_repo(full_name)
    return {
        "clone_url": repo.clone_url,
        "default_branch": repo.default_branch,
        "owner": repo.owner.login,
    }


async def clone_for_task(task: dict[str, Any], workspace: Workspace, settings: Settings, *,
                         cloned_before: bool = True) -> str:
    """Clone github.repo into src/ (once: a redelivered task keeps its work); returns base.

    `cloned_before` False: no delivery recorded a finished clone, so whatever src/ holds was
    left by one that died mid-clone (the agent runs only after the clone): it is made again."""
    spec = task.get("github") or {}
    info = await asyncio.to_thread(_repo_info, settings, spec["repo"])
    base = spec.get("base_branch") or info["default_branch"]
    if fs.kind(workspace.root, "src") not in ("dir", None):
        raise gitops.GitError("src/ is not a plain directory; refusing to clone into it")
    if not cloned_before and not workspace.shared and fs.listdir(workspace.root, "src"):
        fs.remove(workspace.root, "src")
    if fs.kind(workspace.root, "src/.git") is None:
        fs.makedirs(workspace.root, "src")
        if fs.listdir(workspace.root, "src"):
            raise gitops.GitError("src/ is not empty; refusing to clone over it")
        await gitops.clone(
            info["clone_url"],
            workspace.src,
            base,
            settings.github_token or None,
            allow_file=settings.git_allow_file_remotes,
        )
    return base


def pr_body(task: dict[str, Any], settings: Settings, extra: str = "") -> str:
    """The PR description: the task, the agent's notes, the summary, verdict and report link."""
    # Markdown, not HTML: no escaping
    template = environment(TEMPLATES_DIR / "github", autoescape=False).get_template(
        "pull_request.md")
    body = template.render(
        task=task, notes=extra, task_url=links.task_page(settings, task["id"]),
        report_url=links.report_link(settings, task["id"]),
    )
    return redact(body)[:60_000]


def _find_or_create_pr(
    settings: Settings, full_name: str, branch: str, base: str, title: str, body: str
) -> tuple[Any, bool]:
    repo = client(settings).get_repo(full_name)
    for pr in repo.get_pulls(state="all", head=f"{repo.owner.login}:{branch}"):
        if pr.state == "open" or not pr.merged:
            pr.edit(title=title, body=body, state="open")
            return pr, False
    return repo.create_pull(base=base, head=branch, title=title, body=body), True


async def open_or_update_pr(
    task: dict[str, Any],
    workspace: Workspace,
    settings: Settings,
    *,
    title: str,
    notes: str = "",
) -> PullRequestInfo:
    """Commit src/ onto the task's branch, push it, and open or update its one PR."""
    spec = task.get("github") or {}
    if not spec.get("repo"):
        raise ValueError("this task has no github.repo")
    info = await asyncio.to_thread(_repo_info, settings, spec["repo"])
    base = spec.get("base_branch") or info["default_branch"]
    branch = branch_for(task["id"])
    mirror = mirror_for(task["id"], settings)
    stage = mirror.with_name(f"stage-{int(task['id'])}")
    await asyncio.to_thread(gitops.stage_tree, workspace.root, "src", stage)
    try:
        pushed = await gitops.commit_and_push(
            mirror=mirror,
            url=info["clone_url"],
            work_tree=stage,
            branch=branch,
            base=base,
            message=redact(f"{title}\n\nTaskbench task {task['id']}"),
            author=("Taskbench", settings.email_from),
            token=settings.github_token or None,
            allow_file=settings.git_allow_file_remotes,
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, stage, True)
    pr, created = await asyncio.to_thread(
        _find_or_create_pr,
        settings,
        spec["repo"],
        branch,
        base,
        redact(title)[:250],
        pr_body(task, settings, notes),
    )
    return PullRequestInfo(pr.number, pr.html_url, branch, pushed.sha, created)


async def update_pr_body(task: dict[str, Any], settings: Settings) -> int | None:
    """Refresh an existing PR's body with the final summary and verdict; never opens one."""
    spec = task.get("github") or {}

    def _update() -> int | None:
        repo = client(settings).get_repo(spec["repo"])
        for pr in repo.get_pulls(state="open", head=f"{repo.owner.login}:{branch_for(task['id'])}"):
            pr.edit(body=pr_body(task, settings, _notes_of(pr.body or "")))
            return pr.number
        return None

    return await asyncio.to_thread(_update) if spec.get("repo") else None


def _notes_of(body: str) -> str:
    """The agent's own notes kept from an earlier body (between the markers)."""
    m = re.search(r"<!-- notes -->\n(.*?)\n<!-- /notes -->", body, re.S)
    return m.group(1) if m else ""


def parse_issue_url(url: str) -> tuple[str, int]:
    m = ISSUE_URL.match(url.strip())
    if not m:
        raise ValueError(
            "not a GitHub issue URL: expected https://<host>/<owner>/<repo>/issues/<n>"
        )
    return m.group("repo"), int(m.group("number"))


async def issue_to_task(url: str, settings: Settings | None = None) -> tuple[str, str]:
    """The title and body of the issue at `url`, fetched from the configured API only."""
    settings = settings or get_settings()
    full_name, number = parse_issue_url(url)

    def _get() -> tuple[str, str]:
        issue = client(settings).get_repo(full_name).get_issue(number)
        return issue.title or f"Issue #{number}", issue.body or ""

    return await asyncio.to_thread(_get)


async def comment_on_issue(task: dict[str, Any], settings: Settings, text: str) -> str:
    """Post (or, on a re-run, edit) this task's one comment on its source issue."""
    full_name, number = parse_issue_url((task.get("github") or {})["issue"])
    marker = f"<!-- taskbench:task-{task['id']} -->"
    body = f"{marker}\n{redact(text)}"[:60_000]

    def _post() -> str:
        issue = client(settings).get_repo(full_name).get_issue(number)
        for comment in issue.get_comments():
            if marker in (comment.body or ""):
                comment.edit(body)
                return comment.html_url
        return issue.create_comment(body).html_url

    return await asyncio.to_thread(_post)
