"""open_pull_request: commit the workspace's src/ on the task's branch, push, open or update
its one pull request. The token stays in the host process; the agent sees only the PR URL."""

from __future__ import annotations

from app.integrations.gitops import GitError
from app.tools.errors import ToolError, ToolRefused
from app.tools.registry import ToolContext, ToolResult, tool


@tool(
    "open_pull_request",
    "Commit everything in src/ to this task's branch, push it and open a pull request "
    "(or update the existing one). Only for tasks with a GitHub repository.",
    {
        "properties": {
            "title": {"type": "string", "description": "Pull request title"},
            "body": {"type": "string", "description": "What changed and why (Markdown)"},
        },
        "required": ["title", "body"],
    },
)
async def open_pull_request(ctx: ToolContext, title: str, body: str) -> ToolResult:
    # PyGithub is loaded on first use: an idle worker should not carry it.
    from app.integrations import github

    task = {**ctx.task, "id": ctx.task_id}
    if not (task.get("github") or {}).get("repo"):
        raise ToolRefused("this task has no GitHub repository (github.repo)")
    if not title.strip():
        raise ToolError("title must not be empty")
    try:
        pr = await github.open_or_update_pr(
            task, ctx.workspace, ctx.settings, title=title, notes=body[:20_000]
        )
    except GitError as exc:
        raise ToolError(str(exc)) from None
    action = "opened" if pr.created else "updated"
    await ctx.emit(
        "github",
        {
            "action": f"pr_{action}",
            "number": pr.number,
            "url": pr.url,
            "branch": pr.branch,
            "sha": pr.sha,
        },
    )
    return ToolResult(
        f"Pull request #{pr.number} {action}: {pr.url} (branch {pr.branch})",
        {"number": pr.number, "url": pr.url},
    )
