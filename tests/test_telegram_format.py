"""Telegram text for a phone: escaping, rupees, IST times, tables that fit 36 characters."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core import telegram_format as tf


def _pre_lines(text: str) -> list[str]:
    match = re.fullmatch(r"<pre>(.*)</pre>", text, flags=re.DOTALL)
    assert match, text
    return html.unescape(match.group(1)).split("\n")


@pytest.mark.parametrize(("raw", "shown"), [
    ("<b>INFY</b>", "&lt;b&gt;INFY&lt;/b&gt;"),
    ("M&M", "M&amp;M"),
    ('Rahul "R" Sharma', 'Rahul "R" Sharma'),
])
def test_user_text_is_escaped_so_it_cannot_inject_markup(raw: str, shown: str) -> None:
    assert tf.esc(raw) == shown
    assert tf.bold(raw) == f"<b>{shown}</b>"


@pytest.mark.parametrize(("value", "kwargs", "shown"), [
    (Decimal("1234567.891"), {}, "₹12,34,567.89"),
    (Decimal("-1500"), {}, "-₹1,500.00"),
    (Decimal("250.5"), {"signed": True}, "+₹250.50"),
    (Decimal("-250.5"), {"signed": True}, "-₹250.50"),
    (Decimal("0.001"), {"signed": True}, "₹0.00"),
    (Decimal("99999.999"), {"symbol": False}, "1,00,000.00"),
    (None, {}, "—"),
])
def test_rupees_use_indian_grouping_to_the_paisa(value, kwargs, shown: str) -> None:
    assert tf.rupees(value, **kwargs) == shown


def test_times_are_shown_in_ist_whatever_zone_they_come_in() -> None:
    moment = datetime(2026, 11, 21, 14, 2, 5, tzinfo=UTC)  # 19:32:05 IST
    assert tf.ist_stamp(moment) == "21 Nov 2026 19:32:05 IST"
    assert tf.ist_clock(moment) == "19:32 IST"
    assert tf.ist_short(moment) == "21 Nov 19:32"
    assert tf.ist_stamp(None) == "—"


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="naive"):
        tf.ist_stamp(datetime(2026, 11, 21, 9, 15))  # noqa: DTZ001 - the case under test


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "—"), (-3, "0 s"), (42.7, "42 s"), (300, "5 min"), (12000, "3 h 20 min"),
    (7200, "2 h"), (3 * 86400, "3 d"),
])
def test_ages_read_in_the_largest_sensible_unit(seconds, shown: str) -> None:
    assert tf.age_text(seconds) == shown


def test_a_table_fits_a_phone_by_cutting_text_never_numbers() -> None:
    rows = [["Rahul's long-term delivery account", "12,34,567.89", "-1,23,456.78"],
            ["Priya F&O", "0.00", "5.00"]]
    text = tf.table(["Account", "Day ₹", "Week ₹"], rows)
    lines = _pre_lines(text)
    assert all(len(line) <= tf.PHONE_COLUMNS for line in lines), lines
    assert lines[0].startswith("Account")
    assert set(lines[1]) == {"-"}
    assert "12,34,567.89" in lines[2] and "-1,23,456.78" in lines[2]
    assert lines[2].startswith("Rahul's") and tf.ELLIPSIS in lines[2]
    assert "Priya F&O" in lines[3]  # short enough to stay whole
    assert "&amp;" in text  # escaped inside the block


def test_numbers_are_right_aligned_under_their_header() -> None:
    lines = _pre_lines(tf.table(["Sym", "Qty"], [["INFY", "5"], ["TCS", "120"]]))
    assert lines[2] == "INFY   5"
    assert lines[3] == "TCS  120"


def test_a_table_of_numbers_alone_overflows_rather_than_cutting_a_figure() -> None:
    wide = "9" * 20
    lines = _pre_lines(tf.table(["a", "b"], [[wide, wide]], align="rr"))
    assert wide in lines[2]


@pytest.mark.parametrize(("headers", "rows", "align"), [
    (["a", "b"], [["1", "2"]], "lx"),
    (["a", "b"], [["1", "2"]], "l"),
    (["a", "b"], [["1"]], None),
])
def test_a_malformed_table_is_refused_naming_the_rule(headers, rows, align) -> None:
    with pytest.raises(ValueError, match=r"align needs|every row needs"):
        tf.table(headers, rows, align)


def test_a_message_is_a_bold_title_and_its_blocks() -> None:
    text = tf.message("P&L <today>", "line one", None, "", "line two")
    assert text == "<b>P&amp;L &lt;today&gt;</b>\n\nline one\n\nline two"


def test_a_too_long_message_is_cut_at_a_line_with_its_pre_block_closed() -> None:
    rows = [[f"SYM{i}", str(i)] for i in range(600)]
    text = tf.message("Orders", tf.table(["Sym", "Qty"], rows))
    assert len(text) > 0
    assert len(text) <= tf.MESSAGE_LIMIT
    assert text.count("<pre>") == text.count("</pre>") == 1
    assert text.endswith("(cut: too long for one message)")


def test_clipping_never_leaves_half_a_tag_or_entity() -> None:
    text = "x" * 90 + "<b>bold</b> &amp; more"
    for limit in range(60, len(text)):
        clipped = tf.clip(text + "\n" + text, limit=limit + 40)
        assert not re.search(r"<[^>]*$", clipped.split("\n…")[0])
        assert not re.search(r"&[a-z]*$", clipped.split("\n…")[0])


def test_a_more_line_appears_only_when_rows_were_left_out() -> None:
    assert tf.more_line(5, 5, "the app") is None
    assert tf.more_line(5, 12, "the Orders page") == "<i>… and 7 more: see the Orders page</i>"


def test_key_values_escape_the_values() -> None:
    assert tf.key_values([("Feed", "<stalled>")]) == "<b>Feed</b>: &lt;stalled&gt;"


def test_clipping_closes_every_tag_it_leaves_open() -> None:
    text = "<b>Title</b>\n\n<i>" + "word\n" * 2000 + "</i>"
    clipped = tf.clip(text)
    assert len(clipped) <= tf.MESSAGE_LIMIT
    body = clipped.split("\n… (cut")[0]
    assert body.endswith("</i>") and body.count("<i>") == body.count("</i>") == 1
