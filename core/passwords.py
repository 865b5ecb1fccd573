"""Password policy and bcrypt hashing (the same ``$2b$`` hashes streamlit-authenticator checks)."""

from __future__ import annotations

import re
import secrets
import string

import bcrypt

from core.errors import ValidationError

MIN_LENGTH = 10
MAX_BYTES = 72  # bcrypt ignores (bcrypt 5 refuses) anything longer
RULE = (
    f"a password needs {MIN_LENGTH} to {MAX_BYTES} characters with at least one lowercase "
    "letter, one uppercase letter, one digit and one symbol, and must not contain the username"
)
_SYMBOLS = set(string.punctuation)


def check_policy(password: str, username: str) -> None:
    """Raise ValidationError naming the rule and what is missing."""
    missing: list[str] = []
    if len(password) < MIN_LENGTH:
        missing.append(f"length {len(password)} < {MIN_LENGTH}")
    if len(password.encode()) > MAX_BYTES:
        missing.append(f"length {len(password.encode())} bytes > {MAX_BYTES}")
    for label, pattern in (("lowercase", "[a-z]"), ("uppercase", "[A-Z]"), ("digit", "[0-9]")):
        if not re.search(pattern, password):
            missing.append(f"no {label} letter" if label != "digit" else "no digit")
    if not any(ch in _SYMBOLS for ch in password):
        missing.append("no symbol")
    if username and username.lower() in password.lower():
        missing.append("contains the username")
    if missing:
        raise ValidationError(f"Weak password: {RULE}. This one fails: {', '.join(missing)}")


def hash_password(password: str, rounds: int = 12) -> str:
    """Return a bcrypt hash with cost ``rounds`` (BCRYPT_ROUNDS)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    """Return whether ``password`` matches ``password_hash`` (False for over-long input)."""
    raw = password.encode()
    if len(raw) > MAX_BYTES:
        return False
    return bcrypt.checkpw(raw, password_hash.encode())


def generate_password() -> str:
    """Return a fresh random password that meets the policy."""
    alphabet = string.ascii_letters + string.digits
    while True:
        body = "".join(secrets.choice(alphabet) for _ in range(14))
        candidate = f"{body[:7]}-{body[7:]}{secrets.choice('!@#%*+=?')}"
        if (
            re.search("[a-z]", candidate)
            and re.search("[A-Z]", candidate)
            and re.search("[0-9]", candidate)
        ):
            return candidate
