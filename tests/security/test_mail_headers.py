"""Mail header injection: text from a user or a model never becomes a header of its own.

Each attack puts a line break into a value that ends up in a header — raw, or RFC 2047 encoded so
that it only appears once a mail client decodes it — aiming for Bcc, Reply-To or Content-Type.
"""

from __future__ import annotations

import httpx
import pytest

from app.core.config import Settings
from app.integrations.email import HeaderRefused, compose_agent_mail, header_value

PAYLOADS = {
    "raw_crlf_bcc": "Hello\r\nBcc: victim@example.org",
    "raw_lf_reply_to": "Hello\nReply-To: attacker@example.org",
    "raw_cr_content_type": "Hello\rContent-Type: text/html",
    "q_encoded_crlf_bcc": "=?utf-8?q?Hello=0D=0ABcc:_victim@example.org?=",
    "b_encoded_lf_reply_to": "=?utf-8?b?SGVsbG8KUmVwbHktVG86IGF0dGFja2VyQGV4YW1wbGUub3Jn?=",
    "q_encoded_nul": "=?utf-8?q?Hello=00world?=",
    "latin1_encoded_crlf": "=?iso-8859-1?q?Hi=0D=0AContent-Type:_text/html?=",
    "vertical_tab": "Hello\x0bBcc: victim@example.org",
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_header_value_refuses(name: str) -> None:
    with pytest.raises(HeaderRefused, match="line breaks or control"):
        header_value("Subject", PAYLOADS[name])


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_composed_agent_mail_never_carries_the_header(name: str) -> None:
    with pytest.raises(HeaderRefused):
        compose_agent_mail(Settings(), to="me@example.com", msg_id="<tb.1.x@t>",
                           subject=PAYLOADS[name], body="b", attachments=[])


@pytest.mark.parametrize("name", ["raw_crlf_bcc", "q_encoded_crlf_bcc"])
def test_recipient_with_injected_header_is_refused(name: str) -> None:
    with pytest.raises(HeaderRefused):
        compose_agent_mail(Settings(), to="me@example.com" + PAYLOADS[name], msg_id="<tb.2.x@t>",
                           subject="s", body="b", attachments=[])


def test_plain_and_encoded_subjects_still_work() -> None:
    # the control: ordinary text and a harmless encoded word are kept
    msg = compose_agent_mail(Settings(), to="me@example.com", msg_id="<tb.3.x@t>",
                             subject="=?utf-8?q?Caf=C3=A9_report?=", body="b", attachments=[])
    assert "Bcc" not in msg.as_string() and msg["Subject"]


@pytest.mark.parametrize("name", sorted(PAYLOADS))
async def test_task_title_with_injected_header_is_a_422(app_client: httpx.AsyncClient,
                                                        name: str) -> None:
    response = await app_client.post("/tasks", json={"title": PAYLOADS[name], "complexity": 2})
    assert response.status_code == 422
    assert "title" in str(response.json()["detail"][0]["loc"])
