"""JSON as clients send it, read the same way by the API and the importer.

Numbers with a fraction or an exponent become `Decimal`, so a cost sent as the JSON
number 0.1 is exactly 0.1 and never a float's 0.1000000000000000055…; NaN and
Infinity, which are not JSON, are refused. A document nested deeper than Python can
parse is a ValueError like any other malformed input, instead of a RecursionError.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

NESTED_TOO_DEEPLY = "it is nested too deeply"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_refuse_constant)


def loads(document: str | bytes) -> Any:
    """The value of a JSON document; ValueError (UnicodeDecodeError for bytes that are not
    UTF-8, JSONDecodeError with a position for syntax) when it cannot be read."""
    if isinstance(document, bytes | bytearray):
        # As json.loads reads bytes: UTF-8 (with or without BOM), UTF-16 or UTF-32.
        text = document.decode(json.detect_encoding(document), "surrogatepass")
    else:
        text = document
    try:
        return _DECODER.decode(text)
    except RecursionError as exc:
        raise ValueError(NESTED_TOO_DEEPLY) from exc


def raw_decode(text: str, position: int) -> tuple[Any, int]:
    """One JSON value starting at `position` and where it ends (for documents read in chunks)."""
    try:
        return _DECODER.raw_decode(text, position)
    except RecursionError as exc:
        raise ValueError(NESTED_TOO_DEEPLY) from exc
