"""Backfill and reconciliation: a seller's orders from the Orders API, as ORDER_CHANGE facts on ``order-changes``.

The live feed (ORDER_CHANGE through SQS) can miss orders: those from before a seller was imported, and
notifications Amazon never delivered or that were lost. Reconciliation lists the seller's orders with Orders v0
``getOrders`` (:class:`connectors.spapi.OrdersClient`; why v0: its module docstring) and turns each into a
notification **in Amazon's ORDER_CHANGE schema**, the very JSON shape the bridge forwards, keyed ``<seller>/<order>``
on ``order-changes``. The orders agent applies it like any notification, so the core's guarantees hold unchanged:

* ``NotificationId`` is derived from (seller, order, ``LastUpdateDate``, status, marketplace, delivery dates): listing
  an unchanged order again gives the same id, which the record has already applied (a duplicate, nothing happens);
  a change of any fact we use gives a new id.
* ``EventTime`` and ``TimeOfOrderChange`` are the order's ``LastUpdateDate``: facts newer than the record's win,
  older ones only fill gaps (the delivery dates a notification lacked), and no status moves an order backwards or
  commands a sent order again (``docs/state-machine.md``).
* ``NotificationMetadata.ApplicationId`` is :data:`~statemachine.notification.RECONCILIATION_APPLICATION_ID`, so the
  core marks the transitions it causes ("... (reconciliation)" in outcomes and logs).

When it runs: ``solicit sellers import`` (by default the last ``backfill_days`` by purchase date) and
``solicit sellers backfill`` in the CLI process; and daily in the worker (:class:`DailyReconciliation`), the orders
*updated* in the last ``lookback``. Producing goes through :mod:`connectors.kafka`'s idempotent producer, page by
page, each page acknowledged before the next is asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, ConfigDict, Field

from connectors.clock import Clock
from connectors.crypto import SecretKeyError, TokenCipher
from connectors.kafka import KafkaConnection, idempotent_producer
from connectors.spapi import (
    AmazonOrder,
    AppCredentials,
    OrdersClient,
    OrdersPage,
    OrdersQuery,
    SellerCredentials,
    SpApiError,
)
from statemachine import Notification, order_key
from statemachine.notification import RECONCILIATION_APPLICATION_ID
from statemachine.types import format_datetime
from streams.bridge import forwarded_value
from streams.orders import partition_for
from streams.registry import SellerRecord

if TYPE_CHECKING:
    from streams.settings import SpApiSettings

__all__ = [
    "DailyReconciliation",
    "OrderChangesPublisher",
    "OrdersClients",
    "ReconcileConfig",
    "ReconcileReport",
    "Reconciler",
    "daily_slot",
    "order_change_notification",
    "reconciliation_id",
]

log = logging.getLogger(__name__)

DAY = timedelta(days=1)


class ReconcileConfig(BaseModel):
    """Backfill and daily reconciliation (``SOLICIT_RECONCILE__*``); periods are business time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backfill_days: int = Field(
        default=45,
        ge=1,
        le=365,
        description=(
            "Days of orders (by purchase date) `sellers import` and `sellers backfill` list: Amazon's window closes 30 "
            "days after the latest delivery date, which comes up to ~15 days after the purchase."
        ),
    )
    daily: bool = Field(
        default=True,
        description="Reconcile each seller once a day, in the worker that owns its send-commands partition.",
    )
    lookback: timedelta = Field(
        default=timedelta(days=3),
        ge=timedelta(days=1),
        description="The daily run lists the orders updated in this period (more than a day: a missed run is covered).",
    )
    check_interval: float = Field(
        default=60.0, gt=0, description="Real seconds between the worker's looks for sellers due for reconciliation."
    )
    page_size: int = Field(default=100, ge=1, le=100, description="getOrders MaxResultsPerPage.")


def reconciliation_id(seller_id: str, order: AmazonOrder, marketplace_id: str) -> str:
    """The NotificationId of an order's facts: the same facts always give the same id (so a repeat is a duplicate)."""
    facts = "|".join(
        (
            seller_id,
            order.AmazonOrderId,
            format_datetime(order.LastUpdateDate),
            order.OrderStatus,
            marketplace_id,
            format_datetime(order.EarliestDeliveryDate) if order.EarliestDeliveryDate else "",
            format_datetime(order.LatestDeliveryDate) if order.LatestDeliveryDate else "",
        )
    )
    return "reconciliation-" + hashlib.sha256(facts.encode()).hexdigest()[:40]


def order_change_notification(
    seller_id: str, order: AmazonOrder, *, marketplace_id: str, published_at: datetime
) -> Notification:
    """The ORDER_CHANGE notification (Amazon's schema) stating the order's facts as ``getOrders`` listed them."""
    summary: dict[str, Any] = {
        "MarketplaceId": marketplace_id,
        "OrderStatus": order.OrderStatus,
        "PurchaseDate": order.PurchaseDate,
        "DestinationPostalCode": None,
        "FulfillmentType": order.FulfillmentChannel or "MFN",
        "OrderType": order.OrderType or "StandardOrder",
        "OrderItems": [],  # getOrders lists no items; the core uses none
    }
    optional = {
        "NumberOfItemsShipped": order.NumberOfItemsShipped,
        "NumberOfItemsUnshipped": order.NumberOfItemsUnshipped,
        "EarliestDeliveryDate": order.EarliestDeliveryDate,
        "LatestDeliveryDate": order.LatestDeliveryDate,
        "EarliestShipDate": order.EarliestShipDate,
        "LatestShipDate": order.LatestShipDate,
    }
    summary.update({name: value for name, value in optional.items() if value is not None})
    change = {
        "NotificationLevel": "OrderLevel",
        "SellerId": seller_id,
        "AmazonOrderId": order.AmazonOrderId,
        "OrderChangeType": "OrderStatusChange",
        "OrderChangeTrigger": {"TimeOfOrderChange": order.LastUpdateDate, "ChangeReason": "Reconciliation (getOrders)"},
        "Summary": summary,
    }
    return Notification.model_validate(
        {
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": order.LastUpdateDate,
            "Payload": {"OrderChangeNotification": change},
            "NotificationMetadata": {
                "ApplicationId": RECONCILIATION_APPLICATION_ID,
                "SubscriptionId": RECONCILIATION_APPLICATION_ID,
                "PublishTime": published_at,
                "NotificationId": reconciliation_id(seller_id, order, marketplace_id),
            },
        },
        strict=False,
    )


class OrderChangesPublisher:
    """An idempotent producer (:mod:`connectors.kafka`) to ``order-changes``, started on first use."""

    def __init__(self, connection: KafkaConnection, topic: str, *, client_id: str = "solicit-reconcile") -> None:
        self.topic = topic
        self._connection = connection
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def publish(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Send every (order key, value); return once Kafka acknowledged all of them."""
        if not records:
            return
        producer = await self._started()
        pending = [await producer.send(self.topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*pending)

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = idempotent_producer(self._connection, client_id=self._client_id)
                await producer.start()
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


@dataclass
class ReconcileReport:
    """What one run for one seller did."""

    seller_id: str
    kind: str
    """``backfill`` (by purchase date) or ``daily`` (by last update)."""
    since: datetime
    orders: int = 0
    pages: int = 0
    published: int = 0
    skipped: int = 0
    """Orders that could not be read, or name no marketplace of the seller's."""
    seconds: float = 0.0
    error: str | None = None

    def summary(self) -> str:
        what = f"{self.orders} order(s) in {self.pages} page(s), {self.published} published"
        if self.skipped:
            what += f", {self.skipped} skipped"
        outcome = f"failed after {what}: {self.error}" if self.error else what
        return f"{self.seller_id}: {self.kind} since {format_datetime(self.since)}: {outcome} ({self.seconds:.1f} s)"


ClientFor = Callable[[str], OrdersClient | None]
"""LWA app name -> the getOrders client of that app, or None when the app has no credentials here."""


class Reconciler:
    """Lists one seller's orders page by page and publishes each page as ORDER_CHANGE facts."""

    def __init__(
        self,
        *,
        clients: ClientFor,
        cipher: TokenCipher | None,
        publish: Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]],
        clock: Clock,
        config: ReconcileConfig,
    ) -> None:
        self.clients = clients
        self.cipher = cipher
        self.publish = publish
        self.clock = clock
        self.config = config

    async def backfill(self, seller: SellerRecord, days: int | None = None) -> ReconcileReport:
        """The orders purchased in the last ``days`` (default ``backfill_days``)."""
        since = self.clock.now() - timedelta(days=days or self.config.backfill_days)
        return await self.run(seller, "backfill", since)

    async def daily(self, seller: SellerRecord, slot: datetime) -> ReconcileReport:
        """The orders updated in the ``lookback`` before ``slot``."""
        return await self.run(seller, "daily", slot - self.config.lookback)

    async def run(self, seller: SellerRecord, kind: str, since: datetime) -> ReconcileReport:
        """List and publish; never raises for Amazon, the token or Kafka: the report says what went wrong."""
        report = ReconcileReport(seller_id=seller.seller_id, kind=kind, since=since)
        started = time.monotonic()
        try:
            client, credentials = self._access(seller)
            by_purchase = kind == "backfill"
            query = OrdersQuery(
                marketplace_ids=seller.marketplace_ids,
                created_after=since if by_purchase else None,
                last_updated_after=None if by_purchase else since,
                page_size=self.config.page_size,
            )
            async for page in client.pages(credentials, query):
                await self._publish_page(seller, page, report)
        except (SpApiError, SecretKeyError, _NoAccess) as exc:
            report.error = str(exc)
        except Exception as exc:  # Kafka and the unexpected: reported, the next run tries again
            log.exception("reconciling seller %s failed", seller.seller_id)
            report.error = f"{type(exc).__name__}: {exc}"
        report.seconds = time.monotonic() - started
        return report

    def _access(self, seller: SellerRecord) -> tuple[OrdersClient, SellerCredentials]:
        client = self.clients(seller.app)
        if client is None:
            raise _NoAccess(f"no LWA credentials configured for app {seller.app!r}")
        if self.cipher is None:
            raise _NoAccess("no SOLICIT_SECRET_KEY to decrypt the refresh token")
        token = self.cipher.decrypt(seller.refresh_token_encrypted, seller_id=seller.seller_id)
        return client, SellerCredentials(seller_id=seller.seller_id, refresh_token=token)

    async def _publish_page(self, seller: SellerRecord, page: OrdersPage, report: ReconcileReport) -> None:
        now = self.clock.now()
        records: list[tuple[str, bytes]] = []
        only = seller.marketplace_ids[0] if len(seller.marketplace_ids) == 1 else None
        for order in page.orders:
            marketplace_id = order.MarketplaceId or only  # the model leaves MarketplaceId optional
            if marketplace_id not in seller.marketplace_ids:
                report.skipped += 1
                continue
            notification = order_change_notification(
                seller.seller_id, order, marketplace_id=marketplace_id, published_at=now
            )
            records.append((order_key(seller.seller_id, order.AmazonOrderId), forwarded_value(notification)))
        await self.publish(records)
        report.pages += 1
        report.orders += len(page.orders)
        report.skipped += page.unreadable
        report.published += len(records)


class _NoAccess(Exception):
    """This process cannot call Amazon for the seller (no app credentials, no secret key)."""


@dataclass
class OrdersClients:
    """One getOrders client per LWA application, made on first use (like the worker's Solicitations clients)."""

    spapi: SpApiSettings
    clock: Clock
    clients: dict[str, OrdersClient] = field(default_factory=dict)

    def __call__(self, app_name: str) -> OrdersClient | None:
        client = self.clients.get(app_name)
        if client is None:
            credentials = self.spapi.lwa_app(app_name)
            if credentials is None:
                return None
            client = self.clients[app_name] = OrdersClient(
                app=AppCredentials(client_id=credentials.client_id, client_secret=credentials.client_secret),
                clock=self.clock,
                spapi_endpoint=self.spapi.endpoint,
                lwa_endpoint=self.spapi.lwa_endpoint,
                config=self.spapi,
            )
        return client

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def daily_slot(seller_id: str, now: datetime) -> datetime:
    """The seller's latest daily reconciliation time at or before ``now``: a fixed time of day (UTC) per seller,
    spread over the day by a hash of its id, so a hundred sellers do not all start at midnight."""
    offset = timedelta(seconds=int.from_bytes(hashlib.sha256(seller_id.encode()).digest()[:8], "big") % 86_400)
    slot = now.replace(hour=0, minute=0, second=0, microsecond=0) + offset
    return slot if slot <= now else slot - DAY


class DailyReconciliation:
    """Each seller reconciled once a day, by exactly one worker: the one whose sender owns the seller.

    ``send-commands`` is keyed by seller and read by the senders' consumer group, which gives each partition to one
    worker: that worker owns the seller's commands and rate-limit buckets, and (here) its daily getOrders listing.
    Other workers skip the seller, so a seller is never listed by every worker. A worker that comes to own a seller
    (start, rebalance) runs it from the seller's *next* daily slot (:func:`daily_slot`): the previous owner may have
    run the current one. A slot missed in a hand-over or a crash is covered by the next run, whose ``lookback``
    spans more than a day. Business time comes from the worker's clock, so a simulated clock runs days in seconds.
    """

    def __init__(
        self,
        *,
        sellers: Mapping[str, SellerRecord],
        owned_partitions: Callable[[], set[int]],
        partitions: int,
        reconciler: Reconciler,
        clock: Clock,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.sellers = sellers
        self.reconciler = reconciler
        self.clock = clock
        self._owned_partitions = owned_partitions
        self._partitions = partitions
        self._closers = closers
        self._done: dict[str, datetime] = {}
        """Per owned seller: the latest slot that was run (or was current when the seller became ours)."""
        self._running: dict[str, asyncio.Task[None]] = {}
        self.reports: list[ReconcileReport] = []
        """The latest reports (for tests and metrics); bounded."""

    def owned(self) -> set[str]:
        """The sellers whose send-commands partition this worker owns now."""
        assigned = self._owned_partitions()
        return {s for s in self.sellers if partition_for(s.encode(), self._partitions) in assigned}

    def due(self, now: datetime) -> list[tuple[str, datetime]]:
        """The owned sellers whose daily slot came since their last run, each with that slot (marked as run)."""
        owned = self.owned()
        for seller_id in set(self._done) - owned:
            del self._done[seller_id]
        found: list[tuple[str, datetime]] = []
        for seller_id in sorted(owned):
            slot = daily_slot(seller_id, now)
            last = self._done.get(seller_id)
            self._done[seller_id] = slot if last is None else max(last, slot)
            if last is not None and last < slot and seller_id not in self._running:
                found.append((seller_id, slot))
        return found

    def tick(self) -> int:
        """Start the runs that are due (each in its own task); how many were started."""
        started = 0
        for seller_id, slot in self.due(self.clock.now()):
            seller = self.sellers.get(seller_id)
            if seller is None:
                continue
            self._running[seller_id] = asyncio.create_task(self._run(seller, slot), name=f"reconcile:{seller_id}")
            started += 1
        return started

    async def _run(self, seller: SellerRecord, slot: datetime) -> None:
        try:
            report = await self.reconciler.daily(seller, slot)
        finally:
            self._running.pop(seller.seller_id, None)
        self.reports = [*self.reports[-99:], report]
        if report.error:
            log.warning("daily reconciliation of %s", report.summary())
        else:
            log.info("daily reconciliation of %s", report.summary())

    async def stop(self) -> None:
        """Cancel runs in flight (the next owner's next run covers them), then close the clients and the producer."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for close in self._closers:
            await close()
