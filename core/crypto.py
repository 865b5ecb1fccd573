"""Secrets at rest: AES-256-GCM with a key derived from ``SECRET_KEY`` (HKDF-SHA256).

Each purpose ("totp", "broker-credentials", ...) gets its own derived key, and the caller binds
the ciphertext to its record through ``context`` (authenticated, not encrypted), so a secret
copied to another row fails to decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigError

_VERSION = "v1"
_NONCE_BYTES = 12


class SecretBox:
    """Encrypt and decrypt short secrets for one purpose."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        """Derive a 256-bit key for ``purpose`` from the application secret key."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        self._aead = AESGCM(hkdf.derive(secret_key.encode()))

    def encrypt(self, plaintext: str, context: str) -> str:
        """Return ``v1:<base64 nonce+ciphertext>`` bound to ``context``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: str) -> str:
        """Return the plaintext, or raise ConfigError if the key or context does not match."""
        version, _, body = token.partition(":")
        if version != _VERSION:
            raise ConfigError(f"unknown secret format {version!r}; expected {_VERSION!r}")
        raw = base64.urlsafe_b64decode(body.encode())
        try:
            opened = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise ConfigError(
                "a stored secret does not decrypt: SECRET_KEY changed or the record was tampered"
            ) from exc
        return opened.decode()
