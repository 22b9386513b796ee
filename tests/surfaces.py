"""Reading figures where people see them: an element's text in a page, a CSV's rows, an
email's "Label: value" lines. Shared by the tests that compare surfaces."""

from __future__ import annotations

import csv
import email
import io
import re
from email.message import EmailMessage
from email.policy import default as default_policy
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _ElementText(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.element_id = element_id
        self.depth = 0
        self.parts: list[str] = []
        self.found = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            if tag not in VOID:
                self.depth += 1
        elif dict(attrs).get("id") == self.element_id and not self.found:
            self.found = True
            self.depth = 0 if tag in VOID else 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def text_by_id(html: str, element_id: str) -> str:
    """The text of the element with that id (its children's too), spaces collapsed."""
    parser = _ElementText(element_id)
    parser.feed(html)
    assert parser.found, f"no element #{element_id} in the page"
    return " ".join("".join(parser.parts).split())


def csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def parse_email(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default_policy)  # type: ignore[return-value]


def email_text(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def email_row(message: EmailMessage, label: str) -> str:
    """The value of a "Label: value" line of the email's text part."""
    match = re.search(rf"^{re.escape(label)}: (.*)$", email_text(message), re.M)
    assert match, f"no {label!r} line in the email {message['Subject']!r}"
    return match.group(1).strip()
