"""Text people type into the desk: names, labels, groups, display names and e-mail addresses.

Every such value passes through here before it is compared or stored, so each field has one
rule, stated in its refusal ("Member name must be 1-120 characters; got 500").
"""

from __future__ import annotations

import re

from core.errors import ValidationError

NAME_MAX = 120  # member, display and household names (their columns are String(120))
EMAIL_MAX = 254  # the longest address SMTP carries (RFC 5321), the column's size
EMAIL_RULE = (
    "an e-mail address has one '@', a dot in the part after it, and no spaces or angle brackets"
)
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>.]+(\.[^@\s<>.]+)+$")


def clean_name(value: str, what: str, max_len: int = NAME_MAX) -> str:
    """Return ``value`` trimmed, or raise ValidationError if not 1-``max_len`` characters.

    ``what`` names the field in the refusal, e.g. "Member name".
    """
    text = value.strip()
    if not 1 <= len(text) <= max_len:
        raise ValidationError(f"{what} must be 1-{max_len} characters; got {len(text)}")
    return text


def clean_email(value: str | None) -> str | None:
    """Return the trimmed address (None when blank), or raise ValidationError stating the rule."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > EMAIL_MAX:
        raise ValidationError(f"E-mail must be at most {EMAIL_MAX} characters; got {len(text)}")
    if not _EMAIL.match(text):
        raise ValidationError(f"E-mail {text!r} is not an address: {EMAIL_RULE}")
    return text
