"""Telegram message text for a phone: HTML escaping, ₹ amounts, IST times, narrow tables.

Pure functions, no I/O. Every message is Telegram HTML (``parse_mode="HTML"``): user data is
escaped here, once, so a symbol, label or reason can never inject markup. Tables are ``<pre>``
blocks no wider than :data:`PHONE_COLUMNS` characters, the width a phone shows in monospace
without wrapping; text columns are cut with an ellipsis, numbers never are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from core.clock import to_ist
from core.money import inr

#: Characters a table row may take on a phone held upright.
PHONE_COLUMNS = 36
#: Telegram's limit on one message's text (after entity parsing); we count the raw text.
MESSAGE_LIMIT = 4096
ELLIPSIS = "…"
#: The narrowest a text column is cut to before the table gives up and overflows.
MIN_TEXT_WIDTH = 3


def esc(text: object) -> str:
    """Return ``text`` escaped for Telegram HTML (``<``, ``>``, ``&``; quotes left alone)."""
    return html.escape(str(text), quote=False)


def bold(text: object) -> str:
    """Return ``text`` escaped and in bold."""
    return f"<b>{esc(text)}</b>"


def italic(text: object) -> str:
    """Return ``text`` escaped and in italics."""
    return f"<i>{esc(text)}</i>"


def code(text: object) -> str:
    """Return ``text`` escaped in an inline monospace span."""
    return f"<code>{esc(text)}</code>"


def rupees(value: Decimal | int | None, *, signed: bool = False, symbol: bool = True) -> str:
    """Return ``value`` as ``₹12,34,567.89`` with Indian grouping; None as an em dash.

    ``signed`` puts ``+`` before a positive amount (P&L); ``symbol`` False leaves out the ₹
    (a table whose header names the unit).
    """
    text = inr(value, symbol=symbol)
    if signed and value is not None and Decimal(value) > 0 and text != inr(0, symbol=symbol):
        return "+" + text
    return text


def _ist(moment: datetime | None, pattern: str) -> str:
    return "—" if moment is None else to_ist(moment).strftime(pattern)


def ist_stamp(moment: datetime | None) -> str:
    """Return ``21 Nov 2026 19:32:05 IST`` (an aware datetime in IST); None as an em dash."""
    return _ist(moment, "%d %b %Y %H:%M:%S IST")


def ist_clock(moment: datetime | None) -> str:
    """Return ``19:32 IST``; None as an em dash."""
    return _ist(moment, "%H:%M IST")


def ist_since(moment: datetime | None, now: datetime) -> str:
    """Return ``17:13 IST`` for a moment of ``now``'s IST day, else ``20 Nov 17:13 IST``.

    For "since when" texts: a time alone reads as today's. None as an em dash.
    """
    if moment is not None and to_ist(moment).date() != to_ist(now).date():
        return _ist(moment, "%d %b %H:%M IST")
    return ist_clock(moment)


def ist_short(moment: datetime | None) -> str:
    """Return ``21 Nov 19:32`` for a table cell (the header says IST); None as an em dash."""
    return _ist(moment, "%d %b %H:%M")


def age_text(seconds: float | None) -> str:
    """Return a duration for people: ``42 s``, ``5 min``, ``3 h 20 min``, ``2 d``."""
    if seconds is None:
        return "—"
    whole = max(int(seconds), 0)
    if whole < 120:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


def cut(text: str, width: int) -> str:
    """Return ``text`` cut to ``width`` characters, the last one an ellipsis when cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def _fit_widths(widths: list[int], shrinkable: list[bool], limit: int) -> list[int]:
    """Narrow the widest shrinkable column one character at a time until the row fits."""
    widths = list(widths)
    while sum(widths) + len(widths) - 1 > limit:
        candidates = [i for i, ok in enumerate(shrinkable) if ok and widths[i] > MIN_TEXT_WIDTH]
        if not candidates:
            break  # only numbers left: overflow rather than cut a figure
        widest = max(candidates, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
    return widths


def table(headers: Sequence[str], rows: Iterable[Sequence[object]],
          align: str | None = None, width: int = PHONE_COLUMNS) -> str:
    """Return a monospace table in a ``<pre>`` block that fits ``width`` characters a row.

    Parameters
    ----------
    headers : Sequence[str]
        Column titles (keep them short: units go in the title, e.g. ``"Day ₹"``).
    rows : Iterable[Sequence[object]]
        Cells; each is shown with ``str()``.
    align : str | None
        One letter per column, ``"l"`` or ``"r"``; default: the first column left, the rest
        right. Left-aligned (text) columns are cut with an ellipsis to fit; right-aligned
        (number) columns never are.
    width : int
        The most characters a row may take (default :data:`PHONE_COLUMNS`).

    Returns
    -------
    str
        ``<pre>header\\nrule\\nrow...</pre>`` with every cell escaped.

    Raises
    ------
    ValueError
        If ``align`` does not give one ``l`` or ``r`` per column, or a row has another
        number of cells than there are headers.
    """
    count = len(headers)
    align = align or "l" + "r" * (count - 1)
    if len(align) != count or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one 'l' or 'r' per column ({count}); got {align!r}")
    body = [[str(cell) for cell in row] for row in rows]
    for row in body:
        if len(row) != count:
            raise ValueError(f"every row needs {count} cells; got {len(row)}: {row!r}")
    natural = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(headers)]
    widths = _fit_widths(natural, [a == "l" for a in align], width)

    def line(cells: Sequence[str]) -> str:
        parts = [cut(cell, w).ljust(w) if a == "l" else cut(cell, w).rjust(w)
                 for cell, w, a in zip(cells, widths, align, strict=True)]
        return " ".join(parts).rstrip()

    text = [line(list(headers)), "-" * min(sum(widths) + count - 1, width)]
    text.extend(line(row) for row in body)
    return "<pre>" + esc("\n".join(text)) + "</pre>"


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """Return ``<b>Key</b>: value`` lines, values escaped."""
    return "\n".join(f"{bold(key)}: {esc(value)}" for key, value in pairs)


def message(title: str, *blocks: str | None) -> str:
    """Return a message: the bold title, then the non-empty blocks separated by a blank line.

    Blocks are already HTML (built with this module); the title is escaped here.
    """
    parts = [bold(title), *(block for block in blocks if block)]
    return clip("\n\n".join(parts))


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Return ``text`` within ``limit`` characters, cut at a line break, with a closing note.

    Tags left open by the cut (``<pre>``, ``<b>``, ``<i>``, ``<code>``) are closed again so
    the HTML stays valid.
    """
    if len(text) <= limit:
        return text
    note = "\n… (cut: too long for one message)"
    room = limit - len(note) - _CLOSERS_ROOM
    head = text[:room]
    if "\n" in head:
        head = head[: head.rfind("\n")]
    head = _drop_partial_tag(head)
    return head + _closers(head) + note


#: Room :func:`clip` keeps for closing tags: every tag the bot uses, nested once each.
_CLOSERS_ROOM = len("</code></i></b></pre>")
_TAG_RE = re.compile(r"<(/?)(b|i|code|pre)>")


def _closers(html_text: str) -> str:
    """Return the closing tags of the tags still open at the end of ``html_text``."""
    stack: list[str] = []
    for closing, name in _TAG_RE.findall(html_text):
        if not closing:
            stack.append(name)
        elif stack and stack[-1] == name:
            stack.pop()
    return "".join(f"</{name}>" for name in reversed(stack))


def _drop_partial_tag(text: str) -> str:
    """Return ``text`` without a trailing, unfinished ``<tag`` or ``&entity``."""
    lt, gt = text.rfind("<"), text.rfind(">")
    if lt > gt:
        text = text[:lt]
    amp, semi = text.rfind("&"), text.rfind(";")
    if amp > semi and amp >= len(text) - 8:
        text = text[:amp]
    return text


def more_line(shown: int, total: int, where: str) -> str | None:
    """Return ``"… and 7 more: see <where>"`` when rows were left out, else None."""
    if total <= shown:
        return None
    return italic(f"… and {total - shown} more: see {where}")


__all__ = ["ELLIPSIS", "MESSAGE_LIMIT", "PHONE_COLUMNS", "age_text", "bold", "clip", "code",
           "cut", "esc", "ist_clock", "ist_short", "ist_stamp", "italic", "key_values",
           "message", "more_line", "rupees", "table"]
