"""Composing notification email (text + HTML from templates/email/, PDF attached) and where
it goes: an SMTP server from TASKBENCH_SMTP_URL, or .eml files under var_dir/outbox/.

    smtp://user:pass@host:587    plain connection upgraded with STARTTLS when offered
    smtp://host:25?starttls=0    no STARTTLS (local relays, test servers)
    smtps://user:pass@host:465   TLS from the first byte
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from app.core.config import TEMPLATES_DIR, Settings
from app.core.jinja import environment
from app.core.redact import redact


def _render(name: str, context: dict[str, Any]) -> str:
    templates = environment(TEMPLATES_DIR / "email", autoescape=("html",),
                            keep_trailing_newline=True)
    return templates.get_template(name).render(**context)


@dataclass(frozen=True)
class SmtpTarget:
    """Connection parameters parsed from TASKBENCH_SMTP_URL (the password stays in here)."""

    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None
    username: str | None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"SmtpTarget({self.hostname}:{self.port}, tls={self.use_tls})"


def smtp_target(url: str) -> SmtpTarget | None:
    """The SMTP server to use, or None when mail goes to .eml files."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("TASKBENCH_SMTP_URL must start with smtp:// or smtps://")
    use_tls = parts.scheme == "smtps"
    flag = parse_qs(parts.query).get("starttls", [""])[0].lower()
    # None lets aiosmtplib upgrade with STARTTLS whenever the server offers it.
    start_tls = None if use_tls or flag == "" else flag in ("1", "true", "yes")
    return SmtpTarget(
        hostname=parts.hostname or "localhost",
        port=parts.port or (465 if use_tls else 587 if start_tls else 25),
        use_tls=use_tls,
        start_tls=False if use_tls else start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def message_id(task_id: int, kind: str, key: str, settings: Settings) -> str:
    """A stable Message-ID: the same task, kind and key always give the same id."""
    digest = hashlib.sha256(f"{task_id}\x00{kind}\x00{key}".encode()).hexdigest()[:24]
    domain = settings.email_from.rsplit("@", 1)[-1].strip("> ") or "taskbench.local"
    return f"<tb.{task_id}.{kind}.{digest}@{domain}>"


def _attach_file(msg: EmailMessage, path: Path, name: str, cap: int) -> str | None:
    """Attach `path`, or return a note saying why it was left out."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0:
        return f"{name} is not available."
    if size > cap:
        return f"{name} ({size} bytes) is larger than the {cap}-byte limit; use the link."
    _attach_bytes(msg, path.read_bytes(), name)  # var_dir/reports: the host's own file
    return None


def _attach_bytes(msg: EmailMessage, data: bytes, name: str) -> None:
    maintype, subtype = (
        ("application", "pdf") if name.endswith(".pdf") else ("application", "octet-stream")
    )
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class HeaderRefused(ValueError):
    """A header value built from user or model text would carry a line break or control
    character (after RFC 2047 decoding): it could forge Bcc/Reply-To/Content-Type headers.
    Composing such a message fails for good; it is never retried."""


def header_value(name: str, value: str) -> str:
    """`value`, RFC 2047 encoded-words decoded, refused if it holds CR, LF or a control char."""
    try:
        decoded = str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        decoded = value
    for text in (value, decoded):
        if _CONTROL.search(text):
            raise HeaderRefused(f"the {name} header may not contain line breaks or control "
                                f"characters (even RFC 2047 encoded): {text[:80]!r}")
    return value


def _base_message(settings: Settings, to: str, subject: str, msg_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.email_from
    msg["To"] = header_value("To", to)
    msg["Subject"] = header_value("Subject", redact(subject)[:200])
    msg["Message-ID"] = msg_id
    msg["Date"] = formatdate(localtime=False)
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def compose_task_end(
    settings: Settings, *, to: str, msg_id: str, context: dict[str, Any], report: Path | None
) -> EmailMessage:
    """The notification for a finished task: text and HTML parts and the report attached."""
    cap = settings.email_max_attachment_bytes
    note = _attach_note(report, cap)
    ctx = {**context, "attachment_note": note}
    msg = _base_message(
        settings, to, _render("task_end.subject.txt", ctx).strip(), msg_id
    )
    msg.set_content(redact(_render("task_end.txt", ctx)), cte="quoted-printable")
    msg.add_alternative(
        redact(_render("task_end.html", ctx)),
        subtype="html",
        cte="quoted-printable",
    )
    if report is not None and note is None:
        _attach_file(msg, report, f"task-{context['task']['id']}-report.pdf", cap)
    return msg


def compose_question(
    settings: Settings, *, to: str, msg_id: str, context: dict[str, Any]
) -> EmailMessage:
    """A task's question to a person: the question, where to answer, and the deadline."""
    # the question is the model's text: no line break may reach a header
    subject = " ".join(_render("question.subject.txt", context).split())
    msg = _base_message(settings, to, subject, msg_id)
    msg.set_content(redact(_render("question.txt", context)),
                    cte="quoted-printable")
    msg.add_alternative(redact(_render("question.html", context)),
                        subtype="html", cte="quoted-printable")
    return msg


def _attach_note(report: Path | None, cap: int) -> str | None:
    if report is None or not report.is_file():
        return "The report could not be rendered; use the link."
    size = report.stat().st_size
    return None if size <= cap else f"The report ({size} bytes) is too large to attach."


def compose_agent_mail(
    settings: Settings,
    *,
    to: str,
    msg_id: str,
    subject: str,
    body: str,
    attachments: list[tuple[str, bytes | None]],
) -> EmailMessage:
    """A message an agent sent with send_email; the text says it comes from an agent.
    Attachments come as bytes already read through app.sandbox.fs (None: refused/missing)."""
    cap, total = settings.email_max_attachment_bytes, 0
    kept: list[tuple[str, bytes]] = []
    notes: list[str] = []
    for name, data in attachments:
        if data is None or total + len(data) > cap:
            notes.append(f"{name} was left out (missing or over the {cap}-byte limit).")
            continue
        total += len(data)
        kept.append((name, data))
    ctx = {"body": body, "task_id": msg_id.split(".")[1], "notes": notes}
    msg = _base_message(settings, to, subject, msg_id)
    msg.set_content(
        redact(_render("agent_mail.txt", ctx)), cte="quoted-printable"
    )
    for name, data in kept:
        _attach_bytes(msg, data, name)
    return msg


def eml_path(settings: Settings, msg_id: str) -> Path:
    """Where the file sink keeps a message: one file per Message-ID, so a resend overwrites."""
    digest = hashlib.sha256(msg_id.encode()).hexdigest()[:32]
    return Path(settings.var_dir) / "outbox" / f"{digest}.eml"


def write_eml(settings: Settings, msg: EmailMessage) -> Path:
    """Write `msg` atomically to the outbox folder (used when no SMTP server is configured)."""
    path = eml_path(settings, str(msg["Message-ID"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(msg.as_bytes())
    os.replace(tmp, path)
    return path
