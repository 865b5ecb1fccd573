"""Rupees for people: Indian digit grouping (lakh, crore), two decimals, half-up to the paisa."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

from core.errors import ValidationError

PAISA = Decimal("0.01")


def paise(value: Decimal | int) -> Decimal:
    """Return ``value`` rounded half-up to the paisa, as :func:`inr` shows it."""
    return Decimal(value).quantize(PAISA, rounding=ROUND_HALF_UP)


def paise_adding_up(parts: Sequence[Decimal]) -> list[Decimal]:
    """Return ``parts`` to the paisa so that they add up to ``paise(sum(parts))``.

    For a breakdown shown beside its total (the charges of an order): the total is the exact
    sum rounded once, as the desk charges it, and rounding each part on its own could make the
    shown parts add up to a paisa or two more or less. Each part comes back rounded down or up
    to the paisa (never a paisa or more off); the paise the rounded-down parts lack go to the
    parts with the largest remainders, the first of equal ones first (largest remainder
    method). An exact part is never changed.
    """
    floors = [part.quantize(PAISA, rounding=ROUND_FLOOR) for part in parts]
    lacking = int((paise(sum(parts, Decimal(0))) - sum(floors, Decimal(0))) / PAISA)
    # sorted() is stable with reverse=True too: equal remainders keep their order
    largest = sorted(range(len(parts)), key=lambda i: parts[i] - floors[i], reverse=True)
    for index in largest[:lacking]:
        floors[index] += PAISA
    return floors


def accounts_total(figures: Iterable[Decimal]) -> Decimal:
    """Return a figure of several accounts as the desk shows it: their figures to the paisa, added.

    The rule for money shown or downloaded, one way everywhere:

    - Money is rounded to the paisa **per account**, where the money lives: an account's figure
      is its exact amount rounded once (half up, :func:`paise`), as the account's own views
      show it.
    - A **family** (or any multi-account) figure is the sum of its accounts' rounded figures
      (this function), so a reader can add up the rows shown and every screen gives the family
      the same number; it may differ by a paisa or so from the exact sum rounded once.
    - The **parts of one account's figure** (its fills in a trade book, its charge components
      or symbols in a statement) are rounded so that they add up to that account's figure
      (:func:`paise_adding_up`; across accounts, :func:`paise_adding_up_by`).

    Stored values and the exact arithmetic (risk gate, P&L) are never rounded by this rule.
    """
    return sum((paise(figure) for figure in figures), Decimal(0))


def paise_adding_up_by(parts: Sequence[Decimal], groups: Sequence[Hashable]) -> list[Decimal]:
    """Return ``parts`` to the paisa so that each group's add up to its own rounded sum.

    ``groups[i]`` names the account of ``parts[i]``: each account's parts are rounded with
    :func:`paise_adding_up`, so they add up to that account's figure and all of them to the
    sum of the accounts' figures (:func:`accounts_total`). Order is kept.
    """
    if len(parts) != len(groups):
        raise ValueError(f"{len(parts)} parts but {len(groups)} groups")
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    shown = [Decimal(0)] * len(parts)
    for indexes in members.values():
        for index, value in zip(indexes, paise_adding_up([parts[i] for i in indexes]),
                                strict=True):
            shown[index] = value
    return shown


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


#: Digit grouping of whole rupees: Indian (1,00,000; 1,00,00,000) or Western (100,000).
_GROUPED = re.compile(r"^(?:\d{1,2}(?:,\d{2})*,\d{3}|\d{1,3}(?:,\d{3})+)$")


def parse_rupees(raw: object, what: str = "Amount") -> Decimal:
    """Return the rupee amount a person typed (``25000``, ``₹1,00,000.50``), exactly as typed.

    A ₹ sign and digit grouping of the whole rupees are accepted; a comma is never a decimal
    point. Nothing is rounded: the caller's rules (above ₹0, whole paise ...) judge the value,
    and their messages can quote it (:func:`as_typed`). A Decimal or int passes through.

    Raises
    ------
    ValidationError
        For empty text, text that is no number, or a number that is not finite, naming ``what``
        and quoting what was typed.
    """
    if isinstance(raw, Decimal | int) and not isinstance(raw, bool):
        number = Decimal(raw)
    elif isinstance(raw, str):
        number = _typed_number(raw, what)
    else:
        raise ValidationError(f"{what} must be a number of rupees; got {raw!r}")
    if not number.is_finite():
        raise ValidationError(f"{what} must be a finite number of rupees; got {raw!r}")
    return number


def _typed_number(raw: str, what: str) -> Decimal:
    text = raw.strip().removeprefix("₹").strip()
    if not text:
        raise ValidationError(f"{what} is empty; type an amount in rupees, e.g. 25000 or "
                              "25,000.50")
    if "," in text:
        whole, _point, fraction = text.removeprefix("-").partition(".")
        if "," in fraction or not _GROUPED.match(whole):
            raise ValidationError(f"{what} must be a number of rupees (e.g. 25000 or "
                                  f"25,000.50); got {raw!r}: a comma may only group the "
                                  "digits of the whole rupees (1,00,000 or 100,000); write "
                                  "paise with a point")
        text = text.replace(",", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"{what} must be a number of rupees (e.g. 25000 or 25,000.50); "
                              f"got {raw!r}") from None
