"""What fetch_url makes of a body: readable text for the model, and what kind of file it is.

The bytes decide, not the server's Content-Type alone (a PDF served as text/html is a PDF):

    html     main text with trafilatura (boilerplate, menus and scripts left out); the
             standard-library extractor when trafilatura finds nothing
    pdf      the text of each page with pypdf, `[page N]` markers; an encrypted or broken PDF
             is said so, not dumped
    json     a preview of the data: top-level keys or the first records, sizes
    csv      the header, the first rows and the row count
    text     as it is
    binary   images, archives, anything else: never shown as text; described (type, size,
             sha256, an image's dimensions) and saved as it is

Every page is hostile: extraction never executes anything, the libraries are loaded on first
use (an idle worker does not carry them), and what the model sees is capped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import struct
from dataclasses import dataclass
from typing import Any

from app.tools.htmltext import html_to_text

log = logging.getLogger(__name__)
MAX_PDF_PAGES = 200
MAX_TEXT_CHARS = 400_000
PREVIEW_ROWS = 10
PREVIEW_KEYS = 40

_MAGIC: list[tuple[bytes, str, str]] = [
    (b"%PDF-", "pdf", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
    (b"GIF87a", "gif", "image/gif"),
    (b"GIF89a", "gif", "image/gif"),
    (b"PK\x03\x04", "zip", "application/zip"),
    (b"\x1f\x8b", "gz", "application/gzip"),
    (b"\x7fELF", "bin", "application/x-executable"),
    (b"RIFF", "bin", "application/octet-stream"),
]


@dataclass
class Extracted:
    kind: str  # html | pdf | json | csv | text | binary
    ext: str  # how the original is saved: html, pdf, json, csv, txt, png, …
    media_type: str
    title: str
    text: str  # what the model reads (for binary: the description)
    note: str = ""  # a problem worth telling the model (encrypted PDF, cut body, …)


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sniff(body: bytes, content_type: str) -> tuple[str, str, str]:
    """(kind, extension, media type) from the first bytes, then the declared type."""
    head = body[:16]
    for magic, ext, media in _MAGIC:
        if head.startswith(magic):
            return ("pdf" if ext == "pdf" else "binary"), ext, media
    declared = content_type.split(";", 1)[0].strip().lower()
    if b"\x00" in body[:4096]:
        return "binary", "bin", declared or "application/octet-stream"
    start = body[:200].lstrip().lower()
    if "html" in declared or start.startswith((b"<!doctype html", b"<html")):
        return "html", "html", "text/html"
    if "json" in declared or (start[:1] in (b"{", b"[") and _parses_as_json(body)):
        return "json", "json", "application/json"
    if declared in ("text/csv", "application/csv", "text/tab-separated-values"):
        return "csv", "csv", declared
    if declared.startswith(("image/", "audio/", "video/", "font/")) or declared in (
            "application/octet-stream", "application/zip", "application/x-tar"):
        return "binary", "bin", declared
    return "text", "txt", declared or "text/plain"


def _parses_as_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def extract(body: bytes, content_type: str, encoding: str | None, url: str) -> Extracted:
    """The readable form of a fetched body (see the module's docstring)."""
    kind, ext, media = sniff(body, content_type)
    if kind == "pdf":
        return _pdf(body, media)
    if kind == "binary":
        return Extracted("binary", ext, media, "", describe_binary(body, media))
    text = body.decode(encoding or "utf-8", errors="replace")
    if kind == "html":
        title, main = main_text(text, url)
        return Extracted("html", "html", media, title, main)
    if kind == "json":
        return Extracted("json", "json", media, "", json_preview(body))
    if kind == "csv":
        return Extracted("csv", "csv", media, "", csv_preview(text))
    return Extracted("text", "txt", media, "", text[:MAX_TEXT_CHARS])


def main_text(html: str, url: str = "") -> tuple[str, str]:
    """(title, main text) of a page: trafilatura's extraction, else the plain extractor's."""
    title, plain = html_to_text(html)
    try:
        import trafilatura  # loaded on first use

        main = trafilatura.extract(html, url=url or None, include_comments=False,
                                   include_tables=True, favor_recall=True)
        meta = trafilatura.extract_metadata(html)
    except Exception:  # noqa: BLE001 - a hostile page must not break the tool: fall back
        log.info("trafilatura could not extract %s; using the plain extractor", url[:200])
        main, meta = None, None
    if not title and meta is not None and getattr(meta, "title", None):
        title = " ".join(str(meta.title).split())  # the page's <title> first, else this
    return title, (main or plain)[:MAX_TEXT_CHARS]


def _pdf(body: bytes, media: str) -> Extracted:
    try:
        from pypdf import PdfReader  # loaded on first use
        from pypdf.errors import PdfReadError

        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            return Extracted("pdf", "pdf", media, "",
                             describe_binary(body, media), note="the PDF is encrypted: "
                             "no text could be read (the file is saved as it is)")
        info: Any = reader.metadata or {}
        title = str(info.get("/Title") or "").strip()
        pages, size = [], 0
        for n, page in enumerate(reader.pages[:MAX_PDF_PAGES], 1):
            text = (page.extract_text() or "").strip()
            pages.append(f"[page {n}]\n{text}")
            size += len(text)
            if size > MAX_TEXT_CHARS:
                break
        more = len(reader.pages) - len(pages)
        note = f"only the first {len(pages)} of {len(reader.pages)} pages were read" \
            if more > 0 else ""
        text = "\n\n".join(pages)[:MAX_TEXT_CHARS]
        if not text.replace("[page", "").strip(" 0123456789]\n"):
            note = note or "the PDF has no extractable text (scanned images?)"
        return Extracted("pdf", "pdf", media, " ".join(title.split())[:300], text, note)
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError,
            RecursionError) as exc:
        return Extracted("pdf", "pdf", media, "", describe_binary(body, media),
                         note=f"the PDF could not be read ({type(exc).__name__}); "
                         "the file is saved as it is")


def json_preview(body: bytes) -> str:
    data: Any = json.loads(body)
    lines = [f"JSON, {len(body)} bytes."]
    if isinstance(data, dict):
        keys = list(data)
        lines.append(f"An object with {len(keys)} keys: {', '.join(map(str, keys[:PREVIEW_KEYS]))}"
                     + (" …" if len(keys) > PREVIEW_KEYS else ""))
        for key in keys[:PREVIEW_KEYS]:
            lines.append(f"  {key}: {_short(data[key])}")
    elif isinstance(data, list):
        lines.append(f"A list of {len(data)} items; the first {min(len(data), PREVIEW_ROWS)}:")
        lines += [f"  [{i}] {_short(item, 400)}" for i, item in enumerate(data[:PREVIEW_ROWS])]
    else:
        lines.append(f"A single value: {_short(data)}")
    return "\n".join(lines)


def _short(value: Any, width: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, (dict, list)) and len(text) > width:
        size = f"{len(value)} {'keys' if isinstance(value, dict) else 'items'}"
        return f"{text[:width]}… ({size})"
    return text if len(text) <= width else text[:width] + "…"


def csv_preview(text: str) -> str:
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    rows = list(csv.reader(io.StringIO(text[:MAX_TEXT_CHARS]), dialect))
    if not rows:
        return "CSV, empty."
    header, body = rows[0], rows[1:]
    lines = [f"CSV, {len(body)} data rows × {len(header)} columns.",
             "Columns: " + ", ".join(header[:PREVIEW_KEYS])]
    lines += [" | ".join(cell[:80] for cell in row) for row in body[:PREVIEW_ROWS]]
    if len(body) > PREVIEW_ROWS:
        lines.append(f"… {len(body) - PREVIEW_ROWS} more rows in the saved file")
    return "\n".join(lines)


def describe_binary(body: bytes, media: str) -> str:
    """What a binary file is, for the model: type, size, sha256, an image's dimensions."""
    parts = [f"A binary file ({media}), {len(body)} bytes, sha256 {sha256(body)[:16]}…"]
    size = image_size(body)
    if size:
        parts.append(f"an image of {size[0]}×{size[1]} pixels")
    parts.append("not shown as text; saved as it is")
    return "; ".join(parts) + "."


def image_size(body: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or GIF from its header, without decoding it."""
    if body.startswith(b"\x89PNG\r\n\x1a\n") and len(body) >= 24:
        width, height = struct.unpack(">II", body[16:24])
        return int(width), int(height)
    if body[:6] in (b"GIF87a", b"GIF89a") and len(body) >= 10:
        width, height = struct.unpack("<HH", body[6:10])
        return int(width), int(height)
    return None
