"""Table of contents from stored HTML (headings carry ids from the renderer); no Markdown here."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_HEADING = re.compile(r'<h([2-4])\s+id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Entry:
    level: int
    id: str
    text: str


def headings(stored_html: str) -> list[Entry]:
    """Level 2-4 headings in document order, with plain text."""
    return [
        Entry(int(level), html.unescape(anchor), html.unescape(_TAG.sub("", inner)).strip("¶ "))
        for level, anchor, inner in _HEADING.findall(stored_html or "")
    ]
