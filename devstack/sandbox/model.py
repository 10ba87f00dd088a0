"""The sandbox's data: configuration, sellers, orders, faults and the ledger (plain values, no I/O).

Admin API inputs are pydantic models (validated JSON in, clear 400s out); the ledger rows are frozen dataclasses
that tests read directly in-process or as JSON through ``GET /_sandbox/ledger``. No row holds a token: calls are
recorded with the seller the token belonged to and whether a token was sent, never its value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "FaultConfig",
    "FaultKind",
    "LedgerCall",
    "LedgerSolicitation",
    "OrderIn",
    "OrderStatus",
    "SandboxConfig",
    "ScriptedFault",
    "SellerIn",
]

OrderStatus = Literal[
    "Pending",
    "Unshipped",
    "PartiallyShipped",
    "Shipped",
    "Canceled",
    "Unfulfillable",
    "InvoiceUnconfirmed",
    "PendingAvailability",
]
"""ORDER_CHANGE ``Summary.OrderStatus`` values; only ``Shipped`` orders can be solicited."""

FaultKind = Literal["500", "503", "429", "ambiguous", "slow"]
"""``500``/``503``: fail before any effect; ``429``: throttle regardless of the bucket; ``ambiguous``: take effect,
then answer 500; ``slow``: take effect, then wait ``delay`` seconds before answering (clients time out)."""


class SellerIn(BaseModel):
    """A seller known to the sandbox's LWA: its refresh token, and optionally its own rate plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seller_id: str = Field(min_length=1)
    refresh_token: SecretStr
    rate: float | None = Field(default=None, gt=0, description="Requests per second per operation (default: config).")
    burst: int | None = Field(default=None, ge=1, description="Bucket size per operation (default: config).")
    access_denied: bool = Field(
        default=False,
        description="LWA works but every SP-API call answers 403 access denied (e.g. the app lacks the role).",
    )


class OrderIn(BaseModel):
    """An order the sandbox knows, with the delivery dates Amazon knows (also for AFN orders)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seller_id: str = Field(min_length=1)
    order_id: str = Field(min_length=1)
    marketplace_id: str = Field(min_length=1)
    earliest_delivery: AwareDatetime
    latest_delivery: AwareDatetime
    status: OrderStatus = "Shipped"
    fulfillment_channel: Literal["MFN", "AFN"] = Field(
        default="MFN", description="AFN (FBA): getOrders returns no delivery dates, as Amazon's does."
    )
    purchase_date: AwareDatetime | None = Field(
        default=None, description="PurchaseDate (getOrders); default: 5 days before earliest_delivery."
    )
    last_updated: AwareDatetime | None = Field(
        default=None,
        description="LastUpdateDate (getOrders); default: the purchase date, or 2 days before earliest_delivery "
        "once the order left Pending (sandbox choice).",
    )


class ScriptedFault(BaseModel):
    """A one-shot fault for the next SP-API call matching ``operation`` and ``order_id`` (``None`` = any)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fault: FaultKind
    operation: str | None = None
    order_id: str | None = None
    delay: float = Field(default=0.0, ge=0, description="Seconds to hold the answer (``slow`` faults).")


class FaultConfig(BaseModel):
    """Random faults on SP-API calls (never on LWA or the admin API); ``seed`` makes them reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of calls failing 500/503 before any effect.")
    ambiguous_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of successful POSTs that take effect and then answer 500."
    )
    latency: float = Field(default=0.0, ge=0, description="Seconds added before every SP-API answer.")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How a sandbox starts. Everything except the app credentials can also be changed via the admin API."""

    client_id: str = "sandbox-client-id"
    client_secret: SecretStr = field(default_factory=lambda: SecretStr("sandbox-client-secret"))
    sellers: tuple[SellerIn, ...] = ()
    token_lifetime: float = 3600.0
    rate: float = 1.0
    burst: int = 5
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None
    max_body_bytes: int = 65536
    orders_rate: float = 0.0167
    """getOrders plan per seller (Amazon's default, ordersV0.json): requests per second ..."""
    orders_burst: int = 20
    """... and burst."""


@dataclass(frozen=True, slots=True)
class LedgerCall:
    """One HTTP call the sandbox answered on the SP-API or LWA paths."""

    seq: int
    request_id: str
    operation: str
    method: str
    path: str
    query: dict[str, list[str]]
    seller_id: str | None
    order_id: str | None
    status: int
    error_code: str | None
    fault: str | None
    monotonic: float
    at: datetime
    body_bytes: int
    content_type: str | None
    user_agent: str | None
    has_access_token: bool


@dataclass(frozen=True, slots=True)
class LedgerSolicitation:
    """A solicitation the sandbox actually created (the buyer would have been asked)."""

    seller_id: str
    order_id: str
    marketplace_id: str
    request_id: str
    at: datetime
    monotonic: float
