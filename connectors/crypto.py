"""Encryption of seller refresh tokens at rest (Fernet), so a plaintext token never reaches Kafka or a log.

A refresh token lets anyone holding it act for the seller until the seller revokes it, and the sellers topic is
readable by every process and operator with Kafka access. So the registry stores only Fernet ciphertext, and the
key lives in one setting (``SOLICIT_SECRET_KEY``), never in Kafka. Fernet is authenticated encryption (AES-128-CBC +
HMAC-SHA256) from ``cryptography``: a tampered or foreign token fails to decrypt instead of decrypting to garbage.

Key rotation is :class:`cryptography.fernet.MultiFernet`: the setting holds one or more keys, comma separated; the
first encrypts, every one decrypts. Rotate by putting a new key first and keeping the old one after it, re-encrypt
(``solicit sellers rekey``), then drop the old key.

This module never reads the environment: the caller passes the setting's value in as a :class:`pydantic.SecretStr`.
No exception message, ``repr`` or attribute here contains a key or a plaintext token, and exceptions from
``cryptography`` are raised ``from None`` so their context cannot leak one into a traceback either.

Our exception hierarchy::

    SecretKeyError              root; ``str()`` is a complete message for a person
    ├── MissingSecretKey        no key configured: generate one and set SOLICIT_SECRET_KEY
    ├── InvalidSecretKey        a configured key is not a Fernet key: fix or regenerate it (``position`` says which)
    └── UndecryptableToken      no configured key opens this ciphertext: add the key it was encrypted with
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

__all__ = [
    "GENERATE_KEY_HINT",
    "InvalidSecretKey",
    "MissingSecretKey",
    "SecretKeyError",
    "TokenCipher",
    "UndecryptableToken",
    "generate_key",
]

GENERATE_KEY_HINT = (
    "Generate a key with `solicit sellers new-key` (or "
    '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`).'
)
"""How to make a key; every key error's message ends with it."""


class SecretKeyError(Exception):
    """Root of every error of this module."""


class MissingSecretKey(SecretKeyError):
    """No key is configured, so refresh tokens can be neither encrypted nor decrypted."""

    def __init__(self) -> None:
        super().__init__(
            "SOLICIT_SECRET_KEY is not set: it encrypts the sellers' refresh tokens in Kafka, and every process "
            f"(CLI, worker) needs the same value. {GENERATE_KEY_HINT}"
        )


class InvalidSecretKey(SecretKeyError):
    """A configured key is not a Fernet key (32 url-safe base64-encoded bytes)."""

    def __init__(self, position: int, count: int) -> None:
        self.position = position
        self.count = count
        super().__init__(
            f"SOLICIT_SECRET_KEY: key {position} of {count} (comma separated) is not a Fernet key "
            f"(44 characters of url-safe base64 encoding 32 bytes). {GENERATE_KEY_HINT}"
        )


class UndecryptableToken(SecretKeyError):
    """No configured key decrypts the ciphertext: it was encrypted with another key, or it is corrupt."""

    def __init__(self, seller_id: str | None = None) -> None:
        self.seller_id = seller_id
        whose = f"of seller {seller_id} " if seller_id else ""
        super().__init__(
            f"The refresh token {whose}cannot be decrypted with any key in SOLICIT_SECRET_KEY. It was encrypted with "
            "a key that is not configured here: after a key rotation, keep the old key after the new one "
            "(SOLICIT_SECRET_KEY=<new>,<old>) until `solicit sellers rekey` has run. If no key opens it, import "
            "the seller again with its refresh token."
        )


def generate_key() -> str:
    """A fresh random Fernet key, as text for SOLICIT_SECRET_KEY."""
    return Fernet.generate_key().decode("ascii")


class TokenCipher:
    """Encrypts and decrypts refresh tokens with the configured key(s); the first key encrypts, all decrypt."""

    def __init__(self, keys: SecretStr) -> None:
        parts = [part.strip() for part in keys.get_secret_value().split(",")]
        parts = [part for part in parts if part]
        if not parts:
            raise MissingSecretKey()
        fernets: list[Fernet] = []
        for position, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part))
            except (ValueError, TypeError):
                # binascii.Error is a ValueError. `from None`: the context would show the bad key in a traceback.
                raise InvalidSecretKey(position, len(parts)) from None
        self._fernet = MultiFernet(fernets)
        self._key_count = len(fernets)

    @property
    def key_count(self) -> int:
        """How many keys decrypt (1 + the old keys kept for rotation)."""
        return self._key_count

    def encrypt(self, token: SecretStr) -> str:
        """The Fernet ciphertext of ``token`` under the first key, as ASCII text."""
        return self._fernet.encrypt(token.get_secret_value().encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str, *, seller_id: str | None = None) -> SecretStr:
        """The plaintext token; :class:`UndecryptableToken` (naming ``seller_id``) when no key opens it."""
        try:
            plain = self._fernet.decrypt(ciphertext.encode("ascii"))
            return SecretStr(plain.decode("utf-8"))
        except (InvalidToken, UnicodeError, TypeError):
            raise UndecryptableToken(seller_id) from None

    def rotate(self, ciphertext: str, *, seller_id: str | None = None) -> str:
        """``ciphertext`` re-encrypted under the first key, without the plaintext ever leaving this object."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, TypeError):
            raise UndecryptableToken(seller_id) from None

    def __repr__(self) -> str:
        return f"TokenCipher(keys={self._key_count})"
