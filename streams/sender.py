"""The sender: carries out send commands against the SP-API, many sellers at once, each within its own limits.

Commands arrive keyed by seller (so one seller's commands meet in one worker, which owns its rate-limit
buckets). Each seller has a *lane*: a queue ordered by deadline (the order whose window closes first goes
first) and one task working it. Lanes run concurrently, so a slow or throttled seller never stalls another; the
per-(seller, operation) token buckets live in the SP-API client.

For each command: look the seller up in the registry, decrypt its refresh token, ask
``getSolicitationActionsForOrder`` and, when offered, ``createProductReviewAndSellerFeedbackSolicitation``; then
publish a :class:`SendResult` to the orders agent (keyed by order) and a :class:`SendAttempt` to the outcomes
topic. When an earlier create may have taken effect (``maybe_sent``) the check is skipped and create is called
directly, so a 403 "not available" can be read as "already sent".

* **Paused** sellers: their lane holds its commands and waits for a registry change; nothing is lost (and if
  this process dies, the orders agent re-issues each command when its lease runs out).
* **Dry-run** sellers: everything but the create call; the result says ``dry_run``.
* **Unknown** sellers, missing app credentials, undecryptable tokens, revoked authorizations: the order is
  deferred with the reason (and the problem logged at ERROR); it is checked again later.
* **Rejected** requests (400/404/413/415): a permanent failure, and the command goes to the dead-letter topic.

A command for an order already queued replaces it (the newer lease wins), so re-issued commands never pile up.
This module holds no order state that matters: losing it loses nothing but time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from connectors.clock import Clock
from connectors.crypto import SecretKeyError, TokenCipher
from connectors.spapi import (
    AccessDenied,
    AppCredentialsRejected,
    AuthorizationRevoked,
    NotAvailable,
    OutsideWindow,
    RejectedRequest,
    RetryLater,
    SellerCredentials,
    Sent,
    SolicitationsClient,
    SpApiError,
)
from statemachine import SendCommand, SendResult, SendResultKind
from streams.deadletters import DeadLetter
from streams.outcomes import SendAttempt
from streams.registry import SellerRecord

log = logging.getLogger(__name__)
K = SendResultKind


class SellerLookup(Protocol):
    """The sellers registry as the sender sees it."""

    def get(self, seller_id: str) -> SellerRecord | None: ...


class ResultSink(Protocol):
    """Where the sender publishes."""

    async def result(self, result: SendResult) -> None: ...

    async def attempt(self, attempt: SendAttempt) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...


ClientFor = Callable[[str], SolicitationsClient | None]
"""LWA app name -> the client for that app, or None when the app has no credentials configured."""


@dataclass(frozen=True)
class SenderConfig:
    """How long to defer orders the sender cannot serve now (business time, like every due time)."""

    unknown_seller_retry: timedelta = timedelta(hours=24)
    attention_retry: timedelta = timedelta(hours=6)
    """Revoked authorization, access denied, missing app credentials, undecryptable token."""


@dataclass(order=True)
class _Queued:
    deadline: float
    seq: int
    order_key: str = field(compare=False)


@dataclass
class _Lane:
    seller_id: str
    heap: list[_Queued] = field(default_factory=list)
    commands: dict[str, tuple[SendCommand, int]] = field(default_factory=dict)
    """order key -> (newest command, partition)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Sender:
    """Per-seller lanes of send commands; see the module docstring."""

    def __init__(
        self,
        *,
        sellers: SellerLookup,
        client_for: ClientFor,
        cipher: TokenCipher | None,
        sink: ResultSink,
        clock: Clock,
        config: SenderConfig | None = None,
    ) -> None:
        self.sellers = sellers
        self.client_for = client_for
        self.cipher = cipher
        self.sink = sink
        self.clock = clock
        self.config = config or SenderConfig()
        self._lanes: dict[str, _Lane] = {}
        self._seq = itertools.count()
        self._closed = False
        self.counts: dict[str, int] = {}

    # --- intake ---------------------------------------------------------------------------------------------

    def submit(self, command: SendCommand, partition: int) -> None:
        """Queue ``command``; a queued command for the same order is replaced by the newer lease."""
        if self._closed:
            return
        lane = self._lanes.get(command.seller_id)
        if lane is None:
            lane = self._lanes[command.seller_id] = _Lane(command.seller_id)
        queued = lane.commands.get(command.key)
        if queued is not None and queued[0].lease_id >= command.lease_id:
            return  # an older (or repeated) command for an order already queued
        lane.commands[command.key] = (command, partition)
        if queued is None:
            heapq.heappush(lane.heap, _Queued(command.deadline.timestamp(), next(self._seq), command.key))
        lane.wake.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._run(lane), name=f"sender:{lane.seller_id}")

    def revoke(self, partitions: set[int]) -> None:
        """Partitions of the command topic moved to another worker: drop their queued commands."""
        for lane in self._lanes.values():
            for order_key, (_command, partition) in list(lane.commands.items()):
                if partition in partitions:
                    del lane.commands[order_key]

    def seller_changed(self, seller_id: str) -> None:
        """The registry changed for this seller (e.g. resumed): let its lane look again."""
        lane = self._lanes.get(seller_id)
        if lane is not None:
            lane.wake.set()

    def queued(self) -> int:
        return sum(len(lane.commands) for lane in self._lanes.values())

    async def close(self) -> None:
        """Stop every lane; queued commands are dropped (their leases bring them back elsewhere)."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- lanes ----------------------------------------------------------------------------------------------

    def _next(self, lane: _Lane) -> tuple[SendCommand, int] | None:
        while lane.heap:
            head = heapq.heappop(lane.heap)
            queued = lane.commands.pop(head.order_key, None)
            if queued is not None:
                return queued
        return None

    async def _run(self, lane: _Lane) -> None:
        while lane.commands:
            seller = self.sellers.get(lane.seller_id)
            if seller is not None and seller.policy.paused:
                lane.wake.clear()
                log.info("seller %s is paused: holding %d command(s)", lane.seller_id, len(lane.commands))
                await lane.wake.wait()
                continue
            queued = self._next(lane)
            if queued is None:
                break
            command, _partition = queued
            try:
                await self._send(command, seller)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one order kill the seller's lane
                log.exception("sending %s failed unexpectedly", command.key)
                await self._publish(command, K.RETRYABLE_FAILURE, reason="internal error in the sender")

    async def _send(self, command: SendCommand, seller: SellerRecord | None) -> None:
        started = self.clock.monotonic()
        if seller is None:
            log.warning("no seller %s in the registry: deferring %s", command.seller_id, command.key)
            await self._publish(
                command,
                K.DEFERRED,
                reason=f"seller {command.seller_id} is not in the registry",
                retry_after=self.config.unknown_seller_retry,
            )
            return
        client = self.client_for(seller.app)
        if client is None:
            log.error("no LWA credentials for app %r of seller %s", seller.app, seller.seller_id)
            await self._attention(command, f"no LWA credentials configured for app {seller.app!r}")
            return
        if self.cipher is None:
            log.error("SOLICIT_SECRET_KEY is not set: cannot decrypt the token of seller %s", seller.seller_id)
            await self._attention(command, "no secret key configured to decrypt the refresh token")
            return
        try:
            token = self.cipher.decrypt(seller.refresh_token_encrypted, seller_id=seller.seller_id)
        except SecretKeyError as exc:
            log.error("%s", exc)
            await self._attention(command, "refresh token cannot be decrypted with the configured keys")
            return
        credentials = SellerCredentials(seller_id=seller.seller_id, refresh_token=token)
        dry_run = seller.policy.dry_run
        try:
            if not command.maybe_sent:
                actions = await client.get_solicitation_actions(credentials, command.order_id, command.marketplace_id)
                if not actions.offered:
                    await self._publish(command, K.NOT_YET_AVAILABLE, request_id=actions.request_id, started=started)
                    return
                if dry_run:
                    await self._publish(
                        command, K.DRY_RUN, request_id=actions.request_id, dry_run=True, started=started
                    )
                    return
            elif dry_run:
                await self._publish(command, K.DRY_RUN, dry_run=True, started=started)
                return
            created = await client.create_product_review_and_seller_feedback(
                credentials, command.order_id, command.marketplace_id
            )
        except RetryLater as exc:
            await self._publish(
                command,
                K.RETRYABLE_FAILURE,
                reason=str(exc),
                request_id=exc.request_id,
                retry_after=self._business(exc.retry_after),
                ambiguous=exc.maybe_sent,
                started=started,
            )
            return
        except (AuthorizationRevoked, AccessDenied) as exc:
            log.error("seller %s needs attention: %s", seller.seller_id, exc)
            await self._attention(command, str(exc), request_id=exc.request_id)
            return
        except AppCredentialsRejected as exc:
            log.critical("LWA rejected the credentials of app %r: %s", seller.app, exc)
            await self._attention(command, str(exc))
            return
        except RejectedRequest as exc:
            log.error("Amazon rejected the request for %s: %s", command.key, exc)
            await self.sink.dead_letter(
                DeadLetter.build(
                    source="send-commands",
                    reason=f"SP-API rejected the request: {exc}",
                    raw=command.model_dump_json(),
                    at=self.clock.now(),
                    key=command.seller_id,
                )
            )
            await self._publish(command, K.PERMANENT_FAILURE, reason=str(exc), request_id=exc.request_id)
            return
        except SpApiError as exc:  # a failure class added later: retry rather than lose the order
            await self._publish(command, K.RETRYABLE_FAILURE, reason=str(exc), request_id=exc.request_id)
            return
        if isinstance(created, Sent):
            await self._publish(command, K.SENT, request_id=created.request_id, started=started)
        elif isinstance(created, NotAvailable):
            await self._publish(
                command,
                K.NOT_AVAILABLE,
                request_id=created.request_id,
                ambiguous=created.after_ambiguous_attempt or command.maybe_sent,
                started=started,
            )
        elif isinstance(created, OutsideWindow):
            await self._publish(command, K.OUTSIDE_WINDOW, request_id=created.request_id, started=started)

    async def _attention(self, command: SendCommand, reason: str, request_id: str | None = None) -> None:
        await self._publish(
            command, K.DEFERRED, reason=reason, request_id=request_id, retry_after=self.config.attention_retry
        )

    def _business(self, real_seconds: float) -> timedelta:
        """A real-time wait (a rate-limit or backoff hint) as business time, for the core's schedule."""
        per_business_second = self.clock.real_seconds(timedelta(seconds=1))
        return timedelta(seconds=real_seconds / per_business_second)

    async def _publish(
        self,
        command: SendCommand,
        kind: SendResultKind,
        *,
        reason: str = "",
        request_id: str | None = None,
        retry_after: timedelta | None = None,
        ambiguous: bool = False,
        dry_run: bool = False,
        started: float | None = None,
    ) -> None:
        self.counts[kind.value] = self.counts.get(kind.value, 0) + 1
        result = SendResult(
            seller_id=command.seller_id,
            order_id=command.order_id,
            lease_id=command.lease_id,
            result=kind,
            request_id=request_id,
            reason=reason,
            retry_after_seconds=retry_after.total_seconds() if retry_after is not None else None,
            after_ambiguous_attempt=ambiguous,
        )
        await self.sink.result(result)
        await self.sink.attempt(
            SendAttempt(
                order_key=command.key,
                seller_id=command.seller_id,
                order_id=command.order_id,
                marketplace_id=command.marketplace_id,
                lease_id=command.lease_id,
                result=kind,
                reason=reason,
                request_id=request_id,
                dry_run=dry_run,
                duration_ms=int((self.clock.monotonic() - started) * 1000) if started is not None else 0,
                at=self.clock.now(),
            )
        )
