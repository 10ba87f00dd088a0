"""Amazon marketplaces: id -> country, SP-API region, and the time zone used for send hours.

Pure data (``docs/amazon-facts.md`` §4). India and the Middle East/Africa marketplaces use the EU
endpoint. An unknown marketplace id is an unknown region: callers get ``None`` / a ``KeyError``, never a default.

Time zones: one IANA zone per marketplace, the zone most of its buyers live in. The United States, Canada,
Mexico, Brazil and Australia span several zones; we pick the zone Amazon uses for that marketplace's
"marketplace time" or its most populous one, so a 9:00-20:00 send window lands in daytime for most buyers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo


class Region(StrEnum):
    """SP-API regions; each has its own endpoint."""

    NA = "NA"
    EU = "EU"
    FE = "FE"


@dataclass(frozen=True, slots=True)
class Marketplace:
    """One Amazon marketplace."""

    marketplace_id: str
    country_code: str
    country: str
    region: Region
    time_zone: str

    @property
    def zone(self) -> ZoneInfo:
        """The marketplace's time zone."""
        return ZoneInfo(self.time_zone)


_ROWS: tuple[tuple[str, str, str, Region, str], ...] = (
    ("ATVPDKIKX0DER", "US", "United States", Region.NA, "America/Los_Angeles"),
    ("A2EUQ1WTGCTBG2", "CA", "Canada", Region.NA, "America/Toronto"),
    ("A1AM78C64UM0Y8", "MX", "Mexico", Region.NA, "America/Mexico_City"),
    ("A2Q3Y263D00KWC", "BR", "Brazil", Region.NA, "America/Sao_Paulo"),
    ("A1F83G8C2ARO7P", "UK", "United Kingdom", Region.EU, "Europe/London"),
    ("A1PA6795UKMFR9", "DE", "Germany", Region.EU, "Europe/Berlin"),
    ("A13V1IB3VIYZZH", "FR", "France", Region.EU, "Europe/Paris"),
    ("APJ6JRA9NG5V4", "IT", "Italy", Region.EU, "Europe/Rome"),
    ("A1RKKUPIHCS9HS", "ES", "Spain", Region.EU, "Europe/Madrid"),
    ("A1805IZSGTT6HS", "NL", "Netherlands", Region.EU, "Europe/Amsterdam"),
    ("A2NODRKZP88ZB9", "SE", "Sweden", Region.EU, "Europe/Stockholm"),
    ("A1C3SOZRARQ6R3", "PL", "Poland", Region.EU, "Europe/Warsaw"),
    ("A33AVAJ2PDY3EV", "TR", "Turkey", Region.EU, "Europe/Istanbul"),
    ("A2VIGQ35RCS4UG", "AE", "United Arab Emirates", Region.EU, "Asia/Dubai"),
    ("A21TJRUUN4KGV", "IN", "India", Region.EU, "Asia/Kolkata"),
    ("A17E79C6D8DWNP", "SA", "Saudi Arabia", Region.EU, "Asia/Riyadh"),
    ("ARBP9OOSHTCHU", "EG", "Egypt", Region.EU, "Africa/Cairo"),
    ("AMEN7PMS3EDWL", "BE", "Belgium", Region.EU, "Europe/Brussels"),
    ("A28R8C7NBKEWEA", "IE", "Ireland", Region.EU, "Europe/Dublin"),
    ("AE08WJ6YKNBMC", "ZA", "South Africa", Region.EU, "Africa/Johannesburg"),
    ("A1VC38T7YXB528", "JP", "Japan", Region.FE, "Asia/Tokyo"),
    ("A39IBJ37TRP1C6", "AU", "Australia", Region.FE, "Australia/Sydney"),
    ("A19VAU5U5O7RUS", "SG", "Singapore", Region.FE, "Asia/Singapore"),
)

MARKETPLACES: dict[str, Marketplace] = {row[0]: Marketplace(*row) for row in _ROWS}
"""Every marketplace in the reference, by marketplace id."""


def marketplace(marketplace_id: str) -> Marketplace | None:
    """The marketplace with this id, or ``None`` when we do not know it."""
    return MARKETPLACES.get(marketplace_id)


def region_of(marketplace_id: str) -> Region | None:
    """The SP-API region serving this marketplace, or ``None`` for an unknown marketplace."""
    found = MARKETPLACES.get(marketplace_id)
    return found.region if found is not None else None
