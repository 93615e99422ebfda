"""Inert text: strings that come from files reach the terminal and plots as plain characters.

A client's file can put anything in a string (a model name, a file name, a note): rich markup
(``[/nope]`` crashes a markup parser), terminal escapes (``\\x1b]0;...`` retitles a terminal)
or mathtext (``$\\foo$`` crashes a matplotlib plot). Everything gradinvert prints for a person
goes through :class:`InertConsole`, which never parses markup and drops control characters from
every segment it renders (tables and progress bars included), so no call site can forget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

# C0 controls except tab and newline, DEL, C1 controls, and the Unicode bidirectional
# overrides and isolates (which reorder what a terminal shows).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """``text`` without control characters (tab and newline are kept)."""
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """``text`` inert and on one line (line breaks become spaces)."""
    return " ".join(inert(text).splitlines())


class InertConsole(Console):
    """A rich console that prints strings as they are: no markup, emoji codes or highlighting,
    and no control characters in anything it renders (rich's own cursor controls excepted)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        kwargs.setdefault("highlight", False)
        super().__init__(**kwargs)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not _CONTROL.search(segment.text):
                yield segment
            else:
                yield Segment(inert(segment.text), segment.style)


def stderr_console() -> InertConsole:
    """An :class:`InertConsole` on stderr (where everything for a person goes)."""
    return InertConsole(stderr=True)
