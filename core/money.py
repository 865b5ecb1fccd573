"""Rupees for people: Indian digit grouping (lakh, crore), two decimals, half-up to the paisa."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

PAISA = Decimal("0.01")


def paise(value: Decimal | int) -> Decimal:
    """Return ``value`` rounded half-up to the paisa, as :func:`inr` shows it."""
    return Decimal(value).quantize(PAISA, rounding=ROUND_HALF_UP)


def inr(value: Decimal | int | None, symbol: bool = True) -> str:
    """Format ``value`` as ``₹12,34,567.89`` (or without the ₹); None as an em dash."""
    if value is None:
        return "—"
    amount = paise(value)
    whole, cents = f"{abs(amount):.2f}".split(".")
    if len(whole) > 3:  # lakhs and crores: 12,34,567
        head, tail = whole[:-3], whole[-3:]
        groups = [head[max(i - 2, 0):i] for i in range(len(head), 0, -2)][::-1]
        whole = ",".join([*groups, tail])
    return f"{'-' if amount < 0 else ''}{'₹' if symbol else ''}{whole}.{cents}"


def as_typed(value: object, symbol: bool = True) -> str:
    """Format an amount as the user typed it: ``₹1324.533``, ``₹0``, ``-₹5``; never rounded.

    For messages about a typed value that breaks a rule, where rounding (as :func:`inr` does)
    could hide the fault. Trailing zeros go (``Decimal('0.0')`` is ``₹0``); text that is no
    number comes back quoted (``'lots'``), a non-finite number as ``NaN`` or ``Infinity``.
    """
    number: Decimal | None = None
    if isinstance(value, float):
        value = str(value)  # widget floats: the shown digits, not the binary expansion
    if isinstance(value, Decimal | str) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            number = None
    if number is None:
        return repr(value)
    if not number.is_finite():
        return str(number)
    digits = f"{number.copy_abs():f}"
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return f"{'-' if number < 0 else ''}{'₹' if symbol else ''}{digits}"
