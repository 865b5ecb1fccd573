"""Text people type into the desk: names, labels, groups, display names and e-mail addresses.

Every such value passes through here before it is compared or stored, so each field has one
rule, stated in its refusal ("Member name must be 1-120 characters; got 500").
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import ValidationError

NAME_MAX = 120  # member, display and household names (their columns are String(120))
EMAIL_MAX = 254  # the longest address SMTP carries (RFC 5321), the column's size
EMAIL_RULE = (
    "an e-mail address has one '@', a dot in the part after it, and no spaces or angle brackets"
)
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>.]+(\.[^@\s<>.]+)+$")


INVISIBLE_RULE = "control and invisible format characters (Unicode Cc, Cf) are not allowed"
_SPACES = re.compile(r"\s+")
#: The zero-width non-joiner and joiner shape the scripts of India (Marathi's eyelash ra is
#: "तर्\u200dहा"): right after a letter or sign of one of them they are part of how a name is
#: written and pass; anywhere else they are invisible and refused like any format character.
_JOINERS = frozenset("\u200c\u200d")
_INDIC = frozenset({"DEVANAGARI", "BENGALI", "GURMUKHI", "GUJARATI", "ORIYA", "TAMIL", "TELUGU",
                    "KANNADA", "MALAYALAM", "SINHALA"})


def _shaping(text: str, at: int) -> bool:
    """Return whether the joiner at ``at`` follows a character of an Indian script."""
    return at > 0 and unicodedata.name(text[at - 1], "").split(" ")[0] in _INDIC


def _refuse_invisible(text: str, what: str) -> None:
    found = sorted({f"U+{ord(c):04X}" for at, c in enumerate(text)
                    if unicodedata.category(c) in ("Cc", "Cf")
                    and not (c in _JOINERS and _shaping(text, at))})
    if found:
        raise ValidationError(f"{what} contains {', '.join(found)}: {INVISIBLE_RULE}")


def clean_name(value: str, what: str, max_len: int = NAME_MAX) -> str:
    """Return a typed name, label or group normalised, or raise ValidationError naming the rule.

    Unicode NFKC (look-alike forms become one: a no-break space is a space, 'ＡＢ' is 'AB'),
    then any run of whitespace becomes one space and the ends are trimmed. Control and
    invisible format characters (a newline, NUL, a zero-width space) are refused, so two
    values never read the same yet differ; so is a value empty after all this or longer than
    ``max_len``. ``what`` names the field in the refusal, e.g. "Member name".
    """
    text = unicodedata.normalize("NFKC", value)
    _refuse_invisible(text, what)
    text = _SPACES.sub(" ", text).strip()
    if not 1 <= len(text) <= max_len:
        raise ValidationError(f"{what} must be 1-{max_len} characters; got {len(text)}")
    return text


def clean_email(value: str | None) -> str | None:
    """Return the trimmed address (None when blank), or raise ValidationError stating the rule."""
    text = unicodedata.normalize("NFKC", value or "").strip()
    if not text:
        return None
    _refuse_invisible(text, "E-mail")
    if len(text) > EMAIL_MAX:
        raise ValidationError(f"E-mail must be at most {EMAIL_MAX} characters; got {len(text)}")
    if not _EMAIL.match(text):
        raise ValidationError(f"E-mail {text!r} is not an address: {EMAIL_RULE}")
    return text


def same_name(a: str, b: str) -> bool:
    """Return whether two names read the same: equal once normalised, ignoring case."""
    return _fold(a) == _fold(b)


def _fold(value: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip().casefold()
