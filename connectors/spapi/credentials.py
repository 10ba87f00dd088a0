"""The secrets the connector is given: the app's LWA client credentials and each seller's refresh token.

Secrets are held as :class:`pydantic.SecretStr`, whose ``str``/``repr`` print ``**********``, so a credential object
can be logged, put in an exception or shown by a debugger without leaking the value. Only the LWA module calls
``get_secret_value()``, at the moment it builds the token request.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["AppCredentials", "SellerCredentials"]


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """The SP-API application's LWA client id and secret (one pair for every seller)."""

    client_id: str
    client_secret: SecretStr

    def __post_init__(self) -> None:
        if not isinstance(self.client_secret, SecretStr):
            raise TypeError("client_secret must be a pydantic.SecretStr")


@dataclass(frozen=True, slots=True)
class SellerCredentials:
    """One seller's authorization of our app: their selling-partner id and LWA refresh token."""

    seller_id: str
    refresh_token: SecretStr

    def __post_init__(self) -> None:
        if not isinstance(self.refresh_token, SecretStr):
            raise TypeError("refresh_token must be a pydantic.SecretStr")
