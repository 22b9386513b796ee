"""The lines of a CSV import, handed to `csv.reader` so that a broken quote stays on its line.

A quoted cell may hold line breaks (an error message, say), so `csv.reader` reads on
past the end of a line while a quote is open. When the quote was never meant to span
lines, an unclosed `"` would swallow every following row. So a row read over several
lines is kept only when it is valid CSV, no longer than MAX_ROW_LINES lines and no wider
than the header; otherwise its first line is reported, with the column where its quoting
goes wrong, and reading starts again at the next line.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator

MAX_ROW_LINES = 50  # how far one quoted cell may run; keeps a broken quote from reading the whole file


class CsvLines:
    """An iterator of line texts for `csv.reader` that remembers the lines of the current row
    and can hand all but the first back, to be read again."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self._returned: deque[tuple[int, str]] = deque()
        self.row: list[tuple[int, str]] = []  # (number, text) of the lines of the row being read

    def __iter__(self) -> CsvLines:
        return self

    def __next__(self) -> str:
        if len(self.row) >= MAX_ROW_LINES:
            raise csv.Error(f"a quoted cell runs over {MAX_ROW_LINES} lines")
        line = self._returned.popleft() if self._returned else next(self._lines)
        self.row.append(line)
        return line[1]

    def start_row(self) -> None:
        self.row = []

    @property
    def first_number(self) -> int:
        return self.row[0][0]

    def numbers(self) -> range:
        return range(self.row[0][0], self.row[-1][0] + 1)

    def reread_after_first(self) -> tuple[int, str]:
        """Gives back the lines after the row's first to be read again; returns the first."""
        first, rest = self.row[0], self.row[1:]
        self._returned.extendleft(reversed(rest))
        self.row = [first]
        return first


def quote_problem(line: str) -> str | None:
    """Where the quoting of one line goes wrong, for people (columns count from 1), or None."""
    text = line.rstrip("\r\n")
    at_cell_start, quoted, opened, i = True, False, 0, 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"':
                if text[i + 1 : i + 2] == '"':  # an escaped quote
                    i += 2
                    continue
                quoted = False
                if i + 1 < len(text) and text[i + 1] != ",":
                    return f"text follows the closing quote at column {i + 1}"
        elif char == '"' and at_cell_start:
            quoted, opened = True, i + 1
        at_cell_start = char == "," and not quoted
        i += 1
    if quoted:
        return f"the quote opened at column {opened} is not closed on this line; the next line is read as a new row"
    return None
