"""Reply texts a family member reads on a phone: whose row is whose, and when "since" was."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from sqlalchemy import update

from core import telegram_format as tf
from core.clock import IST, now_ist
from core.services import Services
from core.trading import OrderRequest, OrderType, Product, Side
from db.models import RiskStateRow
from engines.risk_types import Scope
from tests.support.market import open_market, tick


def _text(reply: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", reply))


def test_positions_are_grouped_under_their_account_and_name_the_product(
    services: Services, login,
) -> None:
    open_market(services.db, {"INFY": "1500.00", "TCS": "3000.00"})
    rahul = login("rahul")
    labels = {a.label: a.id for a in services.household.list_accounts(rahul)}
    for label, quantity, product in (("Rahul · Intraday", 4, Product.MIS),
                                     ("Rahul · Long-term", 6, Product.CNC)):
        services.orders.place(rahul, OrderRequest(labels[label], "INFY", Side.BUY, quantity,
                                                  OrderType.MARKET, product))
    tick(services.db, "INFY", "1502.00")
    services.orders.step()
    text = _text(services.telegram_replies.positions(rahul))
    headings = ("Rahul · Intraday", "Rahul · Long-term")
    starts = sorted(text.index(h) for h in headings)
    sections = {text[start:].split("\n", 1)[0]: text[start:end] for start, end in
                zip(starts, [*starts[1:], len(text)], strict=True)}
    assert re.search(r"INFY MIS\s+\+4\b", sections["Rahul · Intraday"])
    assert "CNC" not in sections["Rahul · Intraday"]
    assert re.search(r"INFY CNC\s+\+6\b", sections["Rahul · Long-term"])
    assert "MIS" not in sections["Rahul · Long-term"]


def test_a_since_time_of_an_earlier_day_carries_its_date() -> None:
    now = datetime(2026, 11, 22, 19, 0, tzinfo=IST)
    assert tf.ist_since(datetime(2026, 11, 22, 17, 13, tzinfo=IST), now) == "17:13 IST"
    assert tf.ist_since(datetime(2026, 11, 20, 17, 13, tzinfo=IST), now) == (
        "20 Nov 17:13 IST")
    assert tf.ist_since(None, now) == "—"


def test_a_panic_engaged_days_ago_is_said_with_its_date(services: Services, login) -> None:
    open_market(services.db, {"INFY": "1500.00"})
    rahul = login("rahul")
    services.risk.panic(rahul, Scope.HOUSEHOLD)
    engaged = now_ist() - timedelta(days=2, hours=3)
    with services.db.transaction() as session:
        session.execute(update(RiskStateRow).values(engaged_at=engaged))
    replies = services.telegram_replies
    text = _text(replies.panic_in_force(rahul, replies.panic_plan(rahul)) or "")
    assert f"since {engaged:%d %b %H:%M} IST by rahul" in text, text
