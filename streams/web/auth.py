"""Bearer tokens: who is calling (the token's name), compared in constant time; never echoed back or logged."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

WORKER = "worker"
"""The name of the workers' own token (:func:`internal_token`)."""
COOKIE = "solicit_token"
"""The dashboard keeps the token its user signed in with in this HTTP-only cookie."""


class Tokens:
    """The configured tokens (``SOLICIT_WEB__TOKENS``)."""

    def __init__(self, tokens: Mapping[str, SecretStr], internal: str | None = None) -> None:
        self._tokens = [(name, secret.get_secret_value().encode()) for name, secret in tokens.items()]
        self._internal = internal
        if internal:
            self._tokens.append((WORKER, internal.encode()))

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def who(self, presented: str | None) -> str | None:
        """The name of the token ``presented``, or None. Every configured token is compared, each in constant time,
        so the answer's timing says nothing about which one or how much matched."""
        if not presented:
            return None
        given = presented.encode()
        found = None
        for name, token in self._tokens:
            if token and hmac.compare_digest(given, token):
                found = name
        return found

    def internal(self) -> str | None:
        """The token of this worker's own calls to the other workers (:func:`internal_token`)."""
        return self._internal


def internal_token(secret_key: str) -> str | None:
    """The workers' token among themselves: derived from ``SOLICIT_SECRET_KEY``, which every worker of a group shares
    (and nobody else has), so statistics and alerts work across workers even before any user token is configured."""
    if not secret_key:
        return None
    return hmac.new(secret_key.encode(), b"solicit-web-internal-v1", hashlib.sha256).hexdigest()


def presented_token(authorization: str | None, cookie: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else of the dashboard's cookie."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return cookie or None
