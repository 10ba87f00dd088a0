from __future__ import annotations

import pytest

from connectors.spapi import REGION_BASE_URLS, UnknownMarketplace, base_url_for
from statemachine.marketplaces import MARKETPLACES, Region

EXPECTED_HOST = {
    Region.NA: "https://sellingpartnerapi-na.amazon.com",
    Region.EU: "https://sellingpartnerapi-eu.amazon.com",
    Region.FE: "https://sellingpartnerapi-fe.amazon.com",
}


@pytest.mark.parametrize("marketplace_id", sorted(MARKETPLACES))
def test_every_known_marketplace_maps_to_its_regional_host(marketplace_id: str) -> None:
    region = MARKETPLACES[marketplace_id].region
    assert base_url_for(marketplace_id) == EXPECTED_HOST[region]


@pytest.mark.parametrize(
    ("marketplace_id", "host"),
    [
        ("ATVPDKIKX0DER", "na"),  # US
        ("A2Q3Y263D00KWC", "na"),  # Brazil
        ("A21TJRUUN4KGV", "eu"),  # India uses the EU endpoint
        ("A2VIGQ35RCS4UG", "eu"),  # UAE
        ("AE08WJ6YKNBMC", "eu"),  # South Africa
        ("A28R8C7NBKEWEA", "eu"),  # Ireland
        ("A1VC38T7YXB528", "fe"),  # Japan
        ("A19VAU5U5O7RUS", "fe"),  # Singapore
    ],
)
def test_reference_spot_checks(marketplace_id: str, host: str) -> None:
    assert base_url_for(marketplace_id) == f"https://sellingpartnerapi-{host}.amazon.com"


def test_every_region_has_a_base_url() -> None:
    assert set(REGION_BASE_URLS) == set(Region)


def test_override_replaces_the_host_and_drops_a_trailing_slash() -> None:
    assert base_url_for("A1PA6795UKMFR9", "http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


@pytest.mark.parametrize("override", [None, "http://127.0.0.1:8000"])
def test_unknown_marketplace_is_an_error_even_with_an_override(override: str | None) -> None:
    with pytest.raises(UnknownMarketplace) as caught:
        base_url_for("XXUNKNOWN", override)
    assert caught.value.marketplace_id == "XXUNKNOWN"
    assert "XXUNKNOWN" in str(caught.value)
