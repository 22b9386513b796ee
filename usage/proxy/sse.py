"""Server-Sent Events as the proxy needs them: split a byte stream into whole events,
read an event's data, and take out what the proxy itself asked upstream for.

Everything here works on bytes with C-level searches; JSON is parsed only for the one
event per stream that may be the usage-only chunk.
"""

from __future__ import annotations

import json
import re

# A blank line ends an event; lines end with CRLF, LF or CR (the SSE specification).
_BOUNDARY = re.compile(rb"\r\n\r\n|\r\n\n|\n\r\n|\r\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\n|\r")
DONE = b"[DONE]"

# An event that carries generated output, for time-to-first-token: a non-empty string
# under one of the keys generated text arrives in (the first chat chunk, `"content":""`,
# does not count). Keys in a JSON object are never inside a string, so a quoted key
# followed by a colon cannot come from the text itself.
_OUTPUT = re.compile(rb'"(?:content|reasoning_content|refusal|arguments|text|delta)"\s*:\s*"(?!")')
_USAGE_NULL = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?')
_NO_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')


class EventSplitter:
    """Feeds on chunks as they arrive and hands back each complete event, terminator included."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._pending + chunk if self._pending else chunk
        events: list[bytes] = []
        start = 0
        for boundary in _BOUNDARY.finditer(data):
            events.append(data[start : boundary.end()])
            start = boundary.end()
        self._pending = data[start:]
        return events

    def rest(self) -> bytes:
        """What arrived after the last complete event (a stream cut short)."""
        rest, self._pending = self._pending, b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The `data:` field of an event (several data lines joined by LF), or None."""
    lines = [line for line in _LINE.split(event) if line.startswith(b"data:")]
    if not lines:
        return None
    values = [line[6:] if line.startswith(b"data: ") else line[5:] for line in lines]
    return b"\n".join(values)


def parse_data(event: bytes) -> object | None:
    """The JSON payload of an event; None for `[DONE]`, comments and anything unparsable."""
    data = event_data(event)
    if data is None or data.strip() == DONE:
        return None
    try:
        payload: object = json.loads(data)
        return payload
    except ValueError:
        return None


def carries_output(event: bytes) -> bool:
    return _OUTPUT.search(event) is not None


def without_requested_usage(event: bytes) -> bytes | None:
    """The event as the caller would have received it had the proxy not asked for usage.

    With `stream_options.include_usage` upstream adds `"usage": null` to every chunk and
    one final chunk with empty `choices` and the usage: the field goes, the chunk is
    dropped (None). Anything else passes unchanged.
    """
    if b'"usage"' not in event:
        return event
    if _NO_CHOICES.search(event):
        data = parse_data(event)
        if isinstance(data, dict) and data.get("choices") == [] and isinstance(data.get("usage"), dict):
            return None
    return _USAGE_NULL.sub(b"", event, count=1)
