"""HTML/Markdown to PDF with WeasyPrint, never touching the network or the host's files.

Every resource a document names (images, stylesheets, fonts) goes through `SafeFetcher`, which
serves only regular files under a few allowed directories (the task's workspace and
templates/reports) and `data:` URIs, read through app.sandbox.fs; `http(s)://`,
`file:///etc/passwd`, symlinks, FIFOs and hard links in the workspace and everything else are
refused, so a report cannot be used for SSRF or to read host files. The PDF comes back as
bytes: no temp file is ever written next to its destination by name.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from weasyprint import CSS, HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from app.integrations.markup import REPORTS_TEMPLATES
from app.sandbox import fs

log = logging.getLogger(__name__)
MAX_RESOURCE_BYTES = 20 * 1024 * 1024


class ResourceRefused(ValueError):
    """A document asked for a resource outside what a report may read."""


class SafeFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that reads only files under `roots` (and `data:` URIs)."""

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__(allowed_protocols=("file", "data"), allow_redirects=False)
        self.roots = [Path(r) for r in roots]
        self.refused: list[str] = []

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> URLFetcherResponse:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        data = self.read(url) if scheme == "file" else None
        if data is None:
            self._refuse(url)
        assert data is not None
        mime = mimetypes.guess_type(urlsplit(url).path)[0] or "application/octet-stream"
        return URLFetcherResponse(url, data, {"Content-Type": mime})

    def read(self, url: str) -> bytes | None:
        """The bytes behind a file:// URL if it names a small regular file under a root, read
        through app.sandbox.fs (no link followed on the way), else None."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return None
        path = os.path.normpath(unquote(parts.path))
        for root in self.roots:
            prefix = os.path.normpath(root) + os.sep
            if path.startswith(prefix):
                try:
                    return fs.read_bytes(root, path[len(prefix):], MAX_RESOURCE_BYTES)
                except fs.PathRefused:
                    return None
        return None

    def _refuse(self, url: str) -> None:
        self.refused.append(url)
        # Logged without the query string: an agent-chosen URL may carry junk or bait.
        log.info("report resource refused: %s", url.split("?", 1)[0][:200])
        raise ResourceRefused(f"resource not allowed in reports: {url[:200]}")


def render_pdf(html: str, *, base_dir: Path, roots: Iterable[Path]) -> bytes:
    """Render `html` (relative URLs resolve against `base_dir`) to PDF bytes; the caller
    stores them (through app.sandbox.fs when they go into a workspace)."""
    fetcher = SafeFetcher([*roots, REPORTS_TEMPLATES])
    css = CSS(filename=str(REPORTS_TEMPLATES / "report.css"), url_fetcher=fetcher)
    document = HTML(string=html, base_url=base_dir.as_uri() + "/", url_fetcher=fetcher)
    data = document.write_pdf(stylesheets=[css])
    assert isinstance(data, bytes)
    return data
