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

* **Before a create call**, a :class:`SendStarted` is published and acknowledged: if this process dies after
  Amazon's 201 and before the result, the order still knows it may have been solicited (issue 9.4).
* **Earliest deadline first** across the seller's whole backlog, and **no quota on lost causes**: a command is
  dropped without a call when its calls could not reach Amazon before its deadline, i.e. when the deadline comes
  before ``now`` + the wait for its seller's bucket (the first call's operation) + the time a send takes once its
  first call may go (twice the recent average, measured). Under sustained demand above the quota, the head of a
  lane is always an order at the edge of its window; calling it anyway would spend a GET (and a POST answered
  "outside the window") on an order that misses regardless, while the next order could still have been sent.

Every published :class:`SendResult` is also reported to every :class:`SendObserver` (metrics, the alert signals), with
the :class:`~streams.alerts.SellerProblem` when the result is a deferral that needs a person. An observer that raises
is logged and ignored: observing never changes what is sent.

A command for an order already queued replaces it (the newer lease wins), so re-issued commands never pile up.
Commands come with a *ticket* (their place in ``send-commands``); :attr:`Sender.done` is told when a ticket is
settled, and the command feed (:mod:`streams.command_feed`) commits only offsets below every unsettled ticket: after
a crash or a partition move the commands in flight are read again, at once, by the next owner (issue 9.8). Idle
lanes are dropped, so memory follows the sellers with work, not every SellerId ever seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.clock import Clock
from connectors.crypto import SecretKeyError, TokenCipher
from connectors.spapi import (
    OPERATION_CREATE,
    OPERATION_GET,
    AccessDenied,
    AppCredentialsRejected,
    AuthorizationRevoked,
    CreateResult,
    NotAvailable,
    RejectedRequest,
    RetryLater,
    SellerCredentials,
    Sent,
    SolicitationsClient,
    SpApiError,
)
from statemachine import SendCommand, SendResult, SendResultKind, SendStarted
from statemachine.parse import describe_validation_error
from streams.alerts import SellerProblem
from streams.deadletters import DeadLetter
from streams.outcomes import SendAttempt
from streams.registry import SellerRecord
from streams.topics import SEND_COMMANDS

log = logging.getLogger(__name__)
K = SendResultKind


class SellerLookup(Protocol):
    """The sellers registry as the sender sees it."""

    def get(self, seller_id: str) -> SellerRecord | None: ...


class ResultSink(Protocol):
    """Where the sender publishes; each method returns once Kafka acknowledged the record."""

    async def started(self, started: SendStarted) -> None: ...

    async def result(self, result: SendResult) -> None: ...

    async def attempt(self, attempt: SendAttempt) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...


class SendObserver(Protocol):
    """Told about every published :class:`SendResult`; ``problem`` says which deferral needs a person, if any."""

    def send_result(self, result: SendResult, problem: SellerProblem | None) -> None: ...


class _Deferral(NamedTuple):
    """A deferral that needs a person: the result to publish and the problem to report."""

    result: SendResult
    problem: SellerProblem


_Served = tuple[SendResult, SellerProblem | None]
"""The result of one command and, for a deferral that needs a person, its problem."""

ClientFor = Callable[[str], SolicitationsClient | None]
"""LWA app name -> the client for that app, or None when the app has no credentials configured."""


class SenderConfig(BaseModel):
    """How long to defer orders the sender cannot serve now (business time, like every due time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unknown_seller_retry: timedelta = Field(
        default=timedelta(hours=24), gt=timedelta(0), description="Re-check orders of sellers not in the registry."
    )
    attention_retry: timedelta = Field(
        default=timedelta(hours=6),
        gt=timedelta(0),
        description="Re-check orders of sellers with revoked authorization, denied access or missing credentials.",
    )


Ticket = tuple[int, int]
"""Where a command came from: (partition, offset) of ``send-commands``."""

_WORK_SMOOTHING = 0.2
"""Weight of the newest send in the running average of how long a send takes once its first call may go."""
_WORK_MARGIN = 2.0
"""A command must leave this many average send durations before its deadline (beyond its bucket's wait)."""
_CALLED_TO_THE_END = frozenset({SendResultKind.SENT, SendResultKind.NOT_AVAILABLE, SendResultKind.OUTSIDE_WINDOW})
"""Results of commands whose create call was answered: their duration is that of a whole send."""

Done = Callable[[Ticket], None]
"""Called once per ticket when its command needs the topic no more: carried out (result published), replaced by a
newer lease, dropped past its deadline, or held for a paused seller (whose lease brings it back)."""


@dataclass(order=True)
class _HeapEntry:
    deadline: float
    seq: int
    order_key: str = field(compare=False)


@dataclass
class _Queued:
    command: SendCommand
    partition: int
    offset: int | None
    settled: bool = False


@dataclass
class _Lane:
    seller_id: str
    heap: list[_HeapEntry] = field(default_factory=list)
    commands: dict[str, _Queued] = field(default_factory=dict)
    """order key -> its newest command."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    busy: bool = False
    """A command of this lane is being carried out."""


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
        commands_topic: str = SEND_COMMANDS.name,
        done: Done | None = None,
        observers: Sequence[SendObserver] = (),
    ) -> None:
        self.commands_topic = commands_topic
        self.sellers = sellers
        self.client_for = client_for
        self.cipher = cipher
        self.sink = sink
        self.clock = clock
        self.config = config or SenderConfig()
        self.done = done or (lambda _ticket: None)
        self.observers = tuple(observers)
        self._lanes: dict[str, _Lane] = {}
        self._seq = itertools.count()
        self._closed = False
        self._dropped = 0
        self._work_seconds: float | None = None
        """Real seconds a send takes once its first call may go (running average; None before the first)."""

    # --- intake ---------------------------------------------------------------------------------------------

    async def receive(self, *, partition: int, offset: int, value: bytes | None) -> None:
        """One record of ``send-commands``: queue the command, or dead-letter a record that is not one."""
        try:
            command = SendCommand.model_validate_json(value or b"")
        except ValidationError as exc:
            log.warning("dead-lettering an unreadable send command at %s@%s", partition, offset)
            await self.sink.dead_letter(
                DeadLetter.build(
                    source=self.commands_topic,
                    reason=f"not a send command: {describe_validation_error(exc)}",
                    raw=value or b"",
                    at=self.clock.now(),
                    metadata={"partition": str(partition), "offset": str(offset)},
                )
            )
            self.done((partition, offset))
            return
        self.submit(command, partition, offset)

    def submit(self, command: SendCommand, partition: int, offset: int | None = None) -> None:
        """Queue ``command``; a queued command for the same order is replaced by the newer lease."""
        if self._closed:
            return  # not settled: the command topic gives it to whoever runs next
        lane = self._lanes.get(command.seller_id)
        if lane is None:
            lane = self._lanes[command.seller_id] = _Lane(command.seller_id)
        queued = lane.commands.get(command.key)
        if queued is not None and queued.command.lease_id >= command.lease_id:
            self._settle(_Queued(command, partition, offset))  # an older (or repeated) command, already queued
            return
        lane.commands[command.key] = _Queued(command, partition, offset)
        if queued is not None:
            self._settle(queued)
        else:
            heapq.heappush(lane.heap, _HeapEntry(command.deadline.timestamp(), next(self._seq), command.key))
        lane.wake.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.get_running_loop().create_task(self._run(lane), name=f"sender:{lane.seller_id}")

    def revoke(self, partitions: set[int]) -> None:
        """Partitions of the command topic moved to another worker: drop their queued commands (unsettled: the
        new owner reads them again from the committed offset)."""
        for lane in self._lanes.values():
            for order_key, queued in list(lane.commands.items()):
                if queued.partition in partitions:
                    del lane.commands[order_key]

    def seller_changed(self, seller_id: str) -> None:
        """The registry changed for this seller (e.g. resumed): let its lane look again."""
        lane = self._lanes.get(seller_id)
        if lane is not None:
            lane.wake.set()

    def queued(self) -> int:
        """Commands waiting in the lanes."""
        return sum(len(lane.commands) for lane in self._lanes.values())

    def lanes(self) -> int:
        """Sellers with a lane (idle lanes are dropped)."""
        return len(self._lanes)

    def dropped(self) -> int:
        """Commands dropped without a call because they could no longer make their deadline."""
        return self._dropped

    async def close(self, grace: float = 10.0) -> None:
        """Stop taking commands; let a create call in flight finish (up to ``grace`` seconds), then stop every lane.

        Unsettled commands are read again from the command topic by whoever runs next."""
        self._closed = True
        if self.queued():
            log.info("sender stopping: %d queued command(s) are left to the next owner", self.queued())
        for lane in self._lanes.values():
            lane.wake.set()
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None and not lane.task.done()]
        busy = [lane.task for lane in self._lanes.values() if lane.busy and lane.task is not None]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- lanes ----------------------------------------------------------------------------------------------

    def _settle(self, queued: _Queued) -> None:
        if not queued.settled and queued.offset is not None:
            queued.settled = True
            self.done((queued.partition, queued.offset))

    def _next(self, lane: _Lane, seller: SellerRecord | None) -> tuple[_Queued, float] | None:
        """The queued command with the earliest deadline that can still make it, and the real seconds its first call
        waits for the seller's bucket; the commands ahead of it that cannot are dropped uncalled."""
        while lane.heap:
            head = heapq.heappop(lane.heap)
            queued = lane.commands.pop(head.order_key, None)
            if queued is None:
                continue
            wait = self._quota_wait(queued.command, seller)
            margin = _WORK_MARGIN * (self._work_seconds or 0.0)
            if self.clock.now() + self._business(wait + margin) <= queued.command.deadline:
                return queued, wait
            log.info("%s: its window closes before its calls could reach Amazon; dropped uncalled", queued.command.key)
            self._dropped += 1
            self._settle(queued)
        return None

    def _quota_wait(self, command: SendCommand, seller: SellerRecord | None) -> float:
        """Real seconds until the command's first call may go by its seller's bucket; 0 when no call will be made."""
        if seller is None or self.cipher is None:
            return 0.0
        client = self.client_for(seller.app)
        if client is None:
            return 0.0
        operation = OPERATION_CREATE if command.maybe_sent else OPERATION_GET
        return client.limiter.delay((seller.seller_id, operation))

    def _learn(self, result: SendResult, seconds: float) -> None:
        """Fold one whole send's duration (its bucket wait excluded) into the running average."""
        if result.result not in _CALLED_TO_THE_END:
            return
        seconds = max(0.0, seconds)
        if self._work_seconds is None:
            self._work_seconds = seconds
        else:
            self._work_seconds += _WORK_SMOOTHING * (seconds - self._work_seconds)

    async def _hold(self, lane: _Lane) -> None:
        """The seller is paused: settle what is queued (leases bring it back) and wait for a registry change."""
        lane.wake.clear()
        for queued in lane.commands.values():
            self._settle(queued)
        log.info("seller %s is paused: holding %d command(s)", lane.seller_id, len(lane.commands))
        await lane.wake.wait()

    async def _run(self, lane: _Lane) -> None:
        try:
            while lane.commands and not self._closed:
                seller = self.sellers.get(lane.seller_id)
                if seller is not None and seller.policy.paused:
                    await self._hold(lane)
                    continue
                chosen = self._next(lane, seller)
                if chosen is None:
                    break
                queued, wait = chosen
                lane.busy = True
                began = self.clock.monotonic()
                try:
                    result = await self._serve(queued, seller)
                finally:
                    lane.busy = False
                self._learn(result, self.clock.monotonic() - began - wait)
        finally:
            if not lane.commands and self._lanes.get(lane.seller_id) is lane:
                del self._lanes[lane.seller_id]  # idle lanes hold no memory (fake SellerIds included)

    async def _serve(self, queued: _Queued, seller: SellerRecord | None) -> SendResult:
        command = queued.command
        started = self.clock.monotonic()
        problem: SellerProblem | None = None
        try:
            result, problem = await self._carry_out(command, seller)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one order kill the seller's lane
            log.exception("sending %s failed unexpectedly", command.key)
            result = _result(command, K.RETRYABLE_FAILURE, reason="internal error in the sender")
        await self._publish(command, result, started)
        self._report(result, problem)
        self._settle(queued)
        return result

    # --- one command: each step answers with the command's SendResult -------------------------------------------

    async def _carry_out(self, command: SendCommand, seller: SellerRecord | None) -> _Served:
        if seller is None:
            log.warning("no seller %s in the registry: deferring %s", command.seller_id, command.key)
            reason = f"seller {command.seller_id} is not in the registry"
            return _result(command, K.DEFERRED, reason=reason, retry_after=self.config.unknown_seller_retry), None
        marketplace_id = command.marketplace_id
        if marketplace_id not in seller.marketplace_ids or not seller.policy.enabled(marketplace_id):
            reason = f"marketplace {marketplace_id} is not enabled for seller {seller.seller_id}"
            return _result(command, K.NOT_ENABLED, reason=reason), None
        access = self._access(command, seller)
        if isinstance(access, _Deferral):
            return access
        client, credentials = access
        try:
            return await self._call_amazon(command, seller, client, credentials), None
        except SpApiError as exc:
            return self._failure(command, seller, exc)

    def _access(
        self, command: SendCommand, seller: SellerRecord
    ) -> tuple[SolicitationsClient, SellerCredentials] | _Deferral:
        """The client and credentials for the seller, or the deferral that says why there are none."""
        client = self.client_for(seller.app)
        if client is None:
            log.error("no LWA credentials for app %r of seller %s", seller.app, seller.seller_id)
            reason = f"no LWA credentials configured for app {seller.app!r}"
            return self._attention(command, reason, SellerProblem.NO_CREDENTIALS)
        if self.cipher is None:
            log.error("SOLICIT_SECRET_KEY is not set: cannot decrypt the token of seller %s", seller.seller_id)
            reason = "no secret key configured to decrypt the refresh token"
            return self._attention(command, reason, SellerProblem.NO_SECRET_KEY)
        try:
            token = self.cipher.decrypt(seller.refresh_token_encrypted, seller_id=seller.seller_id)
        except SecretKeyError as exc:
            log.error("%s", exc)
            reason = "refresh token cannot be decrypted with the configured keys"
            return self._attention(command, reason, SellerProblem.UNDECRYPTABLE_TOKEN)
        return client, SellerCredentials(seller_id=seller.seller_id, refresh_token=token)

    async def _call_amazon(
        self, command: SendCommand, seller: SellerRecord, client: SolicitationsClient, credentials: SellerCredentials
    ) -> SendResult:
        """Check (unless an earlier create may have taken effect), then create; dry-run sellers stop before create."""
        dry_run = seller.policy.dry_run
        if not command.maybe_sent:
            actions = await client.get_solicitation_actions(credentials, command.order_id, command.marketplace_id)
            if not actions.offered:
                return _result(command, K.NOT_YET_AVAILABLE, request_id=actions.request_id)
            if dry_run:
                return _result(command, K.DRY_RUN, request_id=actions.request_id)
        elif dry_run:
            return _result(command, K.DRY_RUN)
        # Durable before the call: after a crash the order knows a create may have reached Amazon.
        await self.sink.started(
            SendStarted(seller_id=command.seller_id, order_id=command.order_id, lease_id=command.lease_id)
        )
        created = await client.create_product_review_and_seller_feedback(
            credentials, command.order_id, command.marketplace_id
        )
        return _created(command, created)

    def _failure(self, command: SendCommand, seller: SellerRecord, exc: SpApiError) -> _Served:
        """The result for a failed call, named for what the orders agent does next."""
        if isinstance(exc, RetryLater):
            retry_after = self._business(exc.retry_after)
            result = _result(
                command,
                K.RETRYABLE_FAILURE,
                reason=str(exc),
                request_id=exc.request_id,
                retry_after=retry_after,
                maybe_sent=exc.maybe_sent,
            )
            return result, None
        if isinstance(exc, (AuthorizationRevoked, AccessDenied)):
            fields = {"seller_id": seller.seller_id, "order_key": command.key, "reason": str(exc)}
            log.error("seller %s needs attention: %s", seller.seller_id, exc, extra=fields)
            problem = (
                SellerProblem.AUTHORIZATION_REVOKED
                if isinstance(exc, AuthorizationRevoked)
                else SellerProblem.ACCESS_DENIED
            )
            return self._attention(command, str(exc), problem, request_id=exc.request_id)
        if isinstance(exc, AppCredentialsRejected):
            log.critical("LWA rejected the credentials of app %r: %s", seller.app, exc)
            return self._attention(command, str(exc), SellerProblem.APP_CREDENTIALS_REJECTED)
        if isinstance(exc, RejectedRequest):
            log.error("Amazon rejected the request for %s: %s", command.key, exc)
            return _result(command, K.PERMANENT_FAILURE, reason=str(exc), request_id=exc.request_id), None
        # A failure class added later: retry rather than lose the order.
        return _result(command, K.RETRYABLE_FAILURE, reason=str(exc), request_id=exc.request_id), None

    def _attention(
        self, command: SendCommand, reason: str, problem: SellerProblem, request_id: str | None = None
    ) -> _Deferral:
        result = _result(
            command, K.DEFERRED, reason=reason, request_id=request_id, retry_after=self.config.attention_retry
        )
        return _Deferral(result, problem)

    def _business(self, real_seconds: float) -> timedelta:
        """A real-time wait (a rate-limit or backoff hint) as business time, for the core's schedule."""
        per_business_second = self.clock.real_seconds(timedelta(seconds=1))
        return timedelta(seconds=real_seconds / per_business_second)

    # --- publishing -----------------------------------------------------------------------------------------------

    def _report(self, result: SendResult, problem: SellerProblem | None) -> None:
        """Tell every observer about a published result; an observer that raises is logged and ignored."""
        for observer in self.observers:
            try:
                observer.send_result(result, problem)
            except Exception:
                log.exception("send observer %r failed on the result for %s", observer, result.key)

    async def _publish(self, command: SendCommand, result: SendResult, started: float) -> None:
        """The result to the orders agent, the attempt to the outcomes topic, a rejected command to dead letters."""
        await self.sink.result(result)
        await self.sink.attempt(
            SendAttempt(
                order_key=command.key,
                seller_id=command.seller_id,
                order_id=command.order_id,
                marketplace_id=command.marketplace_id,
                lease_id=command.lease_id,
                result=result.result,
                reason=result.reason,
                request_id=result.request_id,
                dry_run=result.result is K.DRY_RUN,
                duration_ms=int((self.clock.monotonic() - started) * 1000),
                at=self.clock.now(),
            )
        )
        if result.result is K.PERMANENT_FAILURE:
            await self.sink.dead_letter(
                DeadLetter.build(
                    source=self.commands_topic,
                    reason=f"SP-API rejected the request: {result.reason}",
                    raw=command.model_dump_json(),
                    at=self.clock.now(),
                    key=command.seller_id,
                )
            )


def _result(
    command: SendCommand,
    kind: SendResultKind,
    *,
    reason: str = "",
    request_id: str | None = None,
    retry_after: timedelta | None = None,
    maybe_sent: bool = False,
) -> SendResult:
    return SendResult(
        seller_id=command.seller_id,
        order_id=command.order_id,
        lease_id=command.lease_id,
        result=kind,
        request_id=request_id,
        reason=reason,
        retry_after_seconds=retry_after.total_seconds() if retry_after is not None else None,
        maybe_sent=maybe_sent,
    )


def _created(command: SendCommand, created: CreateResult) -> SendResult:
    """The result of a create call that Amazon answered."""
    if isinstance(created, Sent):
        return _result(command, K.SENT, request_id=created.request_id)
    if isinstance(created, NotAvailable):
        # After an attempt that may have taken effect (ours, earlier), "not available" means it was sent.
        maybe_sent = created.maybe_sent or command.maybe_sent
        return _result(command, K.NOT_AVAILABLE, request_id=created.request_id, maybe_sent=maybe_sent)
    return _result(command, K.OUTSIDE_WINDOW, request_id=created.request_id)
