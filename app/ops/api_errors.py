"""One-line messages for a CLI call to the API: API down, or the API's own refusal."""

from __future__ import annotations

import httpx


class CliError(Exception):
    """A failure to show the user as one line (never a traceback)."""


def refusal(resp: httpx.Response) -> CliError:
    """The API's message for a 4xx/5xx, not its raw JSON."""
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text
    if isinstance(detail, list):  # FastAPI 422: [{"loc": [...], "msg": ...}, ...]
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                           for d in detail if isinstance(d, dict))
    return CliError(f"refused ({resp.status_code}): {str(detail)[:300]}")


class Unreachable(CliError):
    """No API answered at the URL (exit code 2)."""


def unreachable(base: str) -> CliError:
    return Unreachable(f"no Taskbench API at {base} — start one with `taskbench up` "
                       "(or point --api / TASKBENCH_API at a running one)")


def request(client: httpx.Client, method: str, url: str, **kw: object) -> httpx.Response:
    """Send one request; turn a connection failure or an error status into a CliError."""
    try:
        resp = client.request(method, url, **kw)  # type: ignore[arg-type]
    except httpx.TransportError as exc:
        raise unreachable(str(client.base_url).removesuffix("/api/v1/")) from exc
    if resp.status_code >= 400:
        raise refusal(resp)
    return resp
