"""Rupees for people: Indian digit grouping (lakh, crore), two decimals, half-up to the paisa."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

PAISA = Decimal("0.01")


def inr(value: Decimal | int | None, symbol: bool = True) -> str:
    """Format ``value`` as ``₹12,34,567.89`` (or without the ₹); None as an em dash."""
    if value is None:
        return "—"
    amount = Decimal(value).quantize(PAISA, rounding=ROUND_HALF_UP)
    whole, paise = f"{abs(amount):.2f}".split(".")
    if len(whole) > 3:  # lakhs and crores: 12,34,567
        head, tail = whole[:-3], whole[-3:]
        groups = [head[max(i - 2, 0):i] for i in range(len(head), 0, -2)][::-1]
        whole = ",".join([*groups, tail])
    return f"{'-' if amount < 0 else ''}{'₹' if symbol else ''}{whole}.{paise}"
