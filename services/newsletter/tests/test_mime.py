"""The hand-written MIME writer against the standard library: its output parses without defects and
reads back exactly as the same message written by ``email.message.EmailMessage``."""

from __future__ import annotations

import email
import email.policy
import email.utils
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

from newsletter import domain
from newsletter.delivery import mime


def test_built_message_is_rfc5322_multipart_alternative_without_injection() -> None:
    raw = mime.build_message(
        from_header=mime.format_address("Distretto Toscano", "news@d.example"),
        to_name='Zoë "Z" Rossi\r\nBcc: victim@evil.example',
        to_addr="zoe@example.org",
        subject="Novità\r\nBcc: victim@evil.example",
        text="Ciao Zoë\n.\nline with = sign\n" + "x" * 200,
        html="<p>Ciao Zoë</p>",
        message_id=mime.message_id_for("c1", "s1", "d.example"),
        extra_headers=[("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    assert msg.get_content_type() == "multipart/alternative"
    assert "Bcc" not in msg and msg.get_all("To") and len(msg.get_all("To")) == 1
    assert "victim@evil.example" in str(msg["To"]) and msg["To"].addresses[0].addr_spec == "zoe@example.org"
    assert str(msg["Subject"]) == "Novità Bcc: victim@evil.example"
    text, html = (p.get_content().replace("\r\n", "\n") for p in msg.iter_parts())
    assert "Ciao Zoë\n.\nline with = sign" in text and "x" * 200 in text.replace("\n", "")
    assert "<p>Ciao Zoë</p>" in html
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.endswith(b"\r\n") and raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")
    assert mime.message_id_for("c1", "s1", "d") == mime.message_id_for("c1", "s1", "d")
    assert mime.message_id_for("c1", "s1", "d") != mime.message_id_for("c1", "s2", "d")


@pytest.mark.parametrize(
    "value",
    [
        "Mario Rossi",
        "",
        " x",
        "x ",
        "a  b",
        "a\tb",
        "Zoë D'Àngelo, Jr.",
        "a\u00a0b",
        "a\u2028b",
        "x\r\nBcc: y",
        "é" * 300,
    ],
)
def test_the_common_cases_shortcuts_are_the_general_paths(value: str) -> None:
    assert mime.clean_header(value, 200) == domain.clean_header_text(value, limit=200)
    assert mime.format_address(value, "a@example.org") == email.utils.formataddr(
        (domain.clean_header_text(value, limit=200), "a@example.org"), charset="utf-8"
    )


def _stdlib(**parts: str) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = Address("Distretto Toscano", addr_spec="news@d.example")
    msg["To"] = Address(parts["to_name"], addr_spec=parts["to_addr"])
    msg["Subject"] = parts["subject"]
    msg["Message-ID"] = "<m1@d.example>"
    msg["List-Unsubscribe"] = "<https://d.example/u/t>"
    msg["List-Id"] = "<newsletter.d.example>"
    msg.set_content(parts["text"], cte="quoted-printable")
    msg.add_alternative(parts["html"], subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def _read(raw: bytes) -> dict[str, object]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(not p.defects and p.get_content_charset() == "utf-8" for p in parts)
    return {
        "type": msg.get_content_type(),
        "from": [(a.display_name, a.addr_spec) for a in msg["From"].addresses],
        "to": [(a.display_name, a.addr_spec) for a in msg["To"].addresses],
        "subject": str(msg["Subject"]),
        "message_id": str(msg["Message-ID"]),
        "list_unsubscribe": str(msg["List-Unsubscribe"]),
        "list_id": str(msg["List-Id"]),
        "bodies": [p.get_content().replace("\r\n", "\n") for p in parts],
    }


CASES = [
    {
        "to_name": "Mario Rossi",
        "to_addr": "m@example.org",
        "subject": "Notizie",
        "text": "Ciao\n",
        "html": "<p>Ciao</p>\n",
    },
    {
        "to_name": "Zoë D'Àngelo, Jr.",
        "to_addr": "zoe@example.org",
        "subject": "Novità dal Distretto: bandi è eventi " * 6,
        "text": "Ciao Zoë\n.\n..leading dots\ntrailing space \ntab\there\n= equals =3D\n" + "lungo " * 80 + "\n",
        "html": '<p style="color:#666">Ciao Zoë — “virgolette” €</p>\n' + "<b>x</b>" * 200 + "\n",
    },
    {
        "to_name": "",
        "to_addr": "x@example.org",
        "subject": "日本語の件名",
        "text": "改行\r\nCRLF\n",
        "html": "<p>日本</p>\n",
    },
]


@pytest.mark.parametrize("parts", CASES)
def test_hand_written_message_reads_back_as_the_standard_librarys(parts: dict[str, str]) -> None:
    ours = mime.build_message(
        from_header=mime.format_address("Distretto Toscano", "news@d.example"),
        message_id="<m1@d.example>",
        extra_headers=[("List-Unsubscribe", "<https://d.example/u/t>")],
        shared_headers=mime.header_block([("List-Id", "<newsletter.d.example>")]),
        qp_cache={},
        **parts,
    )
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))
    # every line end CRLF, the last line's too: the engine's DATA relies on it (``send(crlf=True)``)
    assert ours.endswith(b"\r\n") and ours.count(b"\r") == ours.count(b"\n") == ours.count(b"\r\n")
    got, want = _read(ours), _read(_stdlib(**parts))
    # The subject reads back exactly as given. (The standard library's folding of a long encoded
    # subject can drop the space between two encoded words: compared with the input instead.)
    assert got.pop("subject") == parts["subject"].strip()
    want.pop("subject")
    assert got == want


def test_quoted_printable_by_line_equals_whole_body_encoding() -> None:
    cache: dict[str, bytes] = {}
    for text in ["", "\n", "a \nb\t\n.\n", "x" * 200 + " \r\n" + "è" * 40, "end with space ", "=" * 90 + "\n\n"]:
        assert mime._qp(text, cache) == mime._qp(text)
