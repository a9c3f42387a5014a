"""HTML/Markdown to PDF with WeasyPrint, never touching the network or the host's files.

Every resource a document names (images, stylesheets, fonts) goes through `SafeFetcher`, which
serves only regular files under a few allowed directories (the task's workspace and
templates/reports) and `data:` URIs; `http(s)://`, `file:///etc/passwd`, symlinks leading out of
the workspace and everything else are refused, so a report cannot be used for SSRF or to read
host files.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from weasyprint import CSS, HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from app.core.config import TEMPLATES_DIR

log = logging.getLogger(__name__)
REPORTS_TEMPLATES = TEMPLATES_DIR / "reports"
MAX_RESOURCE_BYTES = 20 * 1024 * 1024


class ResourceRefused(ValueError):
    """A document asked for a resource outside what a report may read."""


class SafeFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that reads only files under `roots` (and `data:` URIs)."""

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__(allowed_protocols=("file", "data"), allow_redirects=False)
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.refused: list[str] = []

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> URLFetcherResponse:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme != "file":
            self._refuse(url)
        path = self.allowed_path(url)
        if path is None:
            self._refuse(url)
        assert path is not None
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": mime})

    def allowed_path(self, url: str) -> Path | None:
        """The real path behind a file:// URL if it is a small regular file under a root."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return None
        real = Path(os.path.realpath(unquote(parts.path)))
        inside = any(real == root or root in real.parents for root in self.roots)
        if not inside or not real.is_file() or real.stat().st_size > MAX_RESOURCE_BYTES:
            return None
        return real

    def _refuse(self, url: str) -> None:
        self.refused.append(url)
        # Logged without the query string: an agent-chosen URL may carry junk or bait.
        log.info("report resource refused: %s", url.split("?", 1)[0][:200])
        raise ResourceRefused(f"resource not allowed in reports: {url[:200]}")


def markdown_to_html(text: str) -> str:
    """Agent-written Markdown as HTML; raw HTML is escaped, links and images stay (the fetcher
    decides what an image may load)."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table").enable("strikethrough")
    return md.render(text)


def render_pdf(html: str, *, base_dir: Path, roots: Iterable[Path], out: Path) -> SafeFetcher:
    """Render `html` (relative URLs resolve against `base_dir`) to `out`, atomically."""
    fetcher = SafeFetcher([*roots, REPORTS_TEMPLATES])
    css = CSS(filename=str(REPORTS_TEMPLATES / "report.css"), url_fetcher=fetcher)
    document = HTML(string=html, base_url=base_dir.as_uri() + "/", url_fetcher=fetcher)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        document.write_pdf(str(tmp), stylesheets=[css])
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return fetcher
