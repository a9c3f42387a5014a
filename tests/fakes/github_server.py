"""A fake GitHub REST API on loopback: just the endpoints PyGithub calls for Taskbench.

    GET   /repos/{o}/{r}                         clone_url = file:// path of a local bare repo
    GET   /repos/{o}/{r}/pulls?state&head&base
    POST  /repos/{o}/{r}/pulls                   422 if the head branch is missing or has a PR
    PATCH /repos/{o}/{r}/pulls/{n}
    GET   /repos/{o}/{r}/issues/{n}
    GET   /repos/{o}/{r}/issues/{n}/comments
    POST  /repos/{o}/{r}/issues/{n}/comments
    PATCH /repos/{o}/{r}/issues/comments/{id}

Every request is recorded (method, path, body, Authorization header) for assertions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeGitHub:
    """Start with `with FakeGitHub(tmp) as gh:`; `gh.url` is the API base URL."""

    def __init__(self, root: Path, owner: str = "acme", name: str = "widgets") -> None:
        self.full_name = f"{owner}/{name}"
        self.owner = owner
        self.bare = root / f"{name}.git"
        self.pulls: list[dict[str, Any]] = []
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        _seed_bare_repo(root, self.bare)

    def __enter__(self) -> FakeGitHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_issue(self, number: int, title: str, body: str) -> str:
        self.issues[number] = {"number": number, "title": title, "body": body, "state": "open"}
        return f"https://github.com/{self.full_name}/issues/{number}"

    def branch_sha(self, branch: str) -> str | None:
        out = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.bare),
                "rev-parse",
                "--verify",
                "-q",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() or None

    # JSON shapes ---------------------------------------------------------------------------
    def repo_json(self) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}"
        return {
            "id": 1,
            "name": self.full_name.split("/")[1],
            "full_name": self.full_name,
            "owner": {
                "login": self.owner,
                "id": 1,
                "type": "Organization",
                "url": f"{self.url}/users/{self.owner}",
            },
            "private": False,
            "url": api,
            "html_url": f"https://github.test/{self.full_name}",
            "clone_url": self.bare.as_uri(),
            "default_branch": "main",
        }

    def pull_json(self, pr: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}/pulls/{pr['number']}"
        return {
            **pr,
            "id": pr["number"],
            "url": api,
            "html_url": f"https://github.test/{self.full_name}/pull/{pr['number']}",
            "head": {
                "ref": pr["head"],
                "label": f"{self.owner}:{pr['head']}",
                "sha": self.branch_sha(pr["head"]),
            },
            "base": {"ref": pr["base"], "label": f"{self.owner}:{pr['base']}"},
        }

    def issue_json(self, n: int) -> dict[str, Any]:
        api = f"{self.url}/repos/{self.full_name}/issues/{n}"
        return {
            **self.issues[n],
            "id": n,
            "url": api,
            "comments_url": f"{api}/comments",
            "html_url": f"https://github.test/{self.full_name}/issues/{n}",
        }

    def comment_json(self, c: dict[str, Any]) -> dict[str, Any]:
        return {
            **c,
            "url": f"{self.url}/repos/{self.full_name}/issues/comments/{c['id']}",
            "html_url": f"https://github.test/{self.full_name}/issues/{c['issue']}"
            f"#issuecomment-{c['id']}",
        }

    # Routing -------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]):
        prefix = f"/repos/{self.full_name}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix) :]
        if method == "GET" and rest == "":
            return 200, self.repo_json()
        if rest == "/pulls":
            return self._pulls(method, query, body)
        if m := re.fullmatch(r"/pulls/(\d+)", rest):
            pr = next((p for p in self.pulls if p["number"] == int(m[1])), None)
            if pr is None:
                return 404, {"message": "Not Found"}
            if method == "PATCH":
                pr.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
            return 200, self.pull_json(pr)
        if m := re.fullmatch(r"/issues/(\d+)(/comments)?", rest):
            return self._issue(method, int(m[1]), bool(m[2]), body)
        if (m := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            c = next(c for c in self.comments if c["id"] == int(m[1]))
            c["body"] = body["body"]
            return 200, self.comment_json(c)
        return 404, {"message": "Not Found"}

    def _pulls(self, method: str, query: dict[str, str], body: dict[str, Any]):
        if method == "GET":
            state = query.get("state", "open")
            found = [p for p in self.pulls if state == "all" or p["state"] == state]
            if "head" in query:
                found = [p for p in found if f"{self.owner}:{p['head']}" == query["head"]]
            return 200, [self.pull_json(p) for p in found]
        if self.branch_sha(body["head"]) is None:
            return 422, {"message": "Validation Failed", "errors": [{"field": "head"}]}
        if any(p["head"] == body["head"] and p["state"] == "open" for p in self.pulls):
            return 422, {"message": "A pull request already exists"}
        pr = {
            "number": len(self.pulls) + 1,
            "state": "open",
            "merged": False,
            "title": body["title"],
            "body": body.get("body", ""),
            "head": body["head"],
            "base": body["base"],
        }
        self.pulls.append(pr)
        return 201, self.pull_json(pr)

    def _issue(self, method: str, n: int, comments: bool, body: dict[str, Any]):
        if n not in self.issues:
            return 404, {"message": "Not Found"}
        if not comments:
            return 200, self.issue_json(n)
        if method == "POST":
            c = {"id": 1000 + len(self.comments), "issue": n, "body": body["body"]}
            self.comments.append(c)
            return 201, self.comment_json(c)
        return 200, [self.comment_json(c) for c in self.comments if c["issue"] == n]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                with fake.lock:
                    fake.requests.append(
                        {
                            "method": self.command,
                            "path": parts.path,
                            "query": query,
                            "body": body,
                            "auth": self.headers.get("Authorization"),
                        }
                    )
                    status, payload = fake.route(self.command, parts.path, query, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _seed_bare_repo(root: Path, bare: Path) -> None:
    """A bare repository with one commit on main, standing in for the GitHub remote."""
    seed = root / "seed"
    env = {
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_AUTHOR_NAME": "Seed",
        "GIT_AUTHOR_EMAIL": "seed@example.com",
        "GIT_COMMITTER_NAME": "Seed",
        "GIT_COMMITTER_EMAIL": "seed@example.com",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True, env=env)
    (seed / "README.md").write_text("# widgets\n")
    (seed / "widgets.py").write_text("def widget():\n    return 1\n")
    subprocess.run(["git", "-C", str(seed), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(seed), "commit", "-qm", "initial"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True, env=env)
