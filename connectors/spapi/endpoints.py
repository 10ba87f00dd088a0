"""Which SP-API host serves a marketplace, and the one override that replaces it (sandbox, tests, proxies).

The marketplace -> region table lives in :mod:`statemachine.marketplaces` (one table for the whole project);
this module only adds region -> base URL (``docs/amazon-facts.md`` §4). An unknown marketplace id is
an error even when an override is set: silently sending an order of an unknown marketplace to some region
would work against the sandbox and fail in production, so the two behave the same.
"""

from __future__ import annotations

from statemachine.marketplaces import Region, region_of

from .errors import UnknownMarketplace

__all__ = ["DEFAULT_LWA_TOKEN_URL", "REGION_BASE_URLS", "base_url_for"]

REGION_BASE_URLS: dict[Region, str] = {
    Region.NA: "https://sellingpartnerapi-na.amazon.com",
    Region.EU: "https://sellingpartnerapi-eu.amazon.com",
    Region.FE: "https://sellingpartnerapi-fe.amazon.com",
}
"""Production SP-API base URL per region."""

DEFAULT_LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 - a URL, not a secret
"""Login with Amazon token endpoint; the same for every region."""


def base_url_for(marketplace_id: str, override: str | None = None) -> str:
    """The SP-API base URL (no trailing slash) for calls about an order of ``marketplace_id``.

    ``override`` (``SOLICIT_SPAPI__ENDPOINT``) replaces the regional URL for every marketplace we know.
    Raises :class:`UnknownMarketplace` for a marketplace id not in the table.
    """
    region = region_of(marketplace_id)
    if region is None:
        raise UnknownMarketplace(marketplace_id)
    if override:
        return override.rstrip("/")
    return REGION_BASE_URLS[region]
