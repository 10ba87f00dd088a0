"""The order state table, enforced by a ``transitions`` machine.

The table is the single place that says which trigger may move an order from which state to which. ``apply``
decides *which* trigger an event means; the machine refuses anything the table does not list. The machine
holds no order state: each call hydrates a throwaway model, fires one trigger and reads the result (the
pattern ``transitions`` documents for short-lived models), so records stay plain pydantic data.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any

from transitions import Machine, MachineError

from statemachine.errors import InvalidTransition
from statemachine.record import OrderState

S = OrderState


class Trigger(StrEnum):
    """Every trigger of the state table."""

    HOLD = "hold"
    """First notification of an order that is not shipped yet."""
    SHIP = "ship"
    """A Shipped notification: schedule the first check (also for an order that expired waiting to ship)."""
    CANCEL = "cancel"
    """A Canceled notification."""
    COMMAND = "command"
    """The due time came: issue a send command under a new lease."""
    REISSUE = "reissue"
    """The lease ran out without a result (the sender may have died): issue the command again."""
    NOT_YET = "not_yet"
    """Amazon does not offer the solicitation yet: re-check later."""
    RETRY = "retry"
    """A retryable failure: try again after a backoff."""
    DEFER = "defer"
    """The sender did not try (seller paused/unknown/unauthorized): try again later."""
    CONFIRM_SENT = "confirm_sent"
    """Amazon has a solicitation for the order (created by us, or reported as already there)."""
    FAIL = "fail"
    """A permanent failure."""
    SKIP = "skip"
    """Not sent on purpose: a dry run (would have sent), or a marketplace the seller has not enabled."""
    EXPIRE = "expire"
    """The window (or the wait for shipment) is over."""
    MANUAL_SKIP = "manual_skip"
    """An operator skipped the order: it is never solicited (a "sent" from Amazon still wins)."""
    MANUAL_SEND = "manual_send"
    """An operator asked to send now, inside the window: issue a send command under a new lease."""
    MANUAL_RECHECK = "manual_recheck"
    """An operator asked to re-check: the order is due now; the timer applies the normal rules."""


ACTIVE = [S.PENDING, S.SHIPPED, S.ELIGIBLE, S.WAITING]

TRANSITIONS: tuple[tuple[Trigger, list[OrderState], OrderState], ...] = (
    (Trigger.HOLD, [S.NEW], S.PENDING),
    (Trigger.SHIP, [S.NEW, S.PENDING, S.EXPIRED], S.SHIPPED),
    (Trigger.CANCEL, [S.NEW, *ACTIVE], S.CANCELED),
    (Trigger.COMMAND, [S.SHIPPED, S.WAITING], S.ELIGIBLE),
    (Trigger.REISSUE, [S.ELIGIBLE], S.ELIGIBLE),
    (Trigger.NOT_YET, [S.ELIGIBLE], S.WAITING),
    (Trigger.RETRY, [S.ELIGIBLE], S.WAITING),
    (Trigger.DEFER, [S.ELIGIBLE], S.WAITING),
    (Trigger.CONFIRM_SENT, [*ACTIVE, S.EXPIRED, S.CANCELED, S.FAILED, S.SKIPPED], S.SENT),
    (Trigger.FAIL, [S.ELIGIBLE], S.FAILED),
    (Trigger.SKIP, [S.ELIGIBLE], S.SKIPPED),
    (Trigger.EXPIRE, ACTIVE, S.EXPIRED),
    (Trigger.MANUAL_SKIP, ACTIVE, S.SKIPPED),
    (Trigger.MANUAL_SEND, [S.SHIPPED, S.WAITING], S.ELIGIBLE),
    (Trigger.MANUAL_RECHECK, [S.SHIPPED], S.SHIPPED),
    (Trigger.MANUAL_RECHECK, [S.WAITING], S.WAITING),
)
"""(trigger, sources, destination). CONFIRM_SENT is accepted even from terminal states: a late "sent" from
Amazon is a fact, and the record must say so; nothing is ever commanded from SENT. A trigger that keeps the state
(``manual_recheck``) has one row per state. A refused manual action is not a transition: ``apply`` publishes it
with ``source == dest`` and leaves the record as it was."""

_MACHINE = Machine(
    model=None,
    states=[s.value for s in OrderState],
    transitions=[{"trigger": t.value, "source": [s.value for s in src], "dest": d.value} for t, src, d in TRANSITIONS],
    initial=None,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


class _Order:
    """Throwaway model the machine moves; ``state`` is set by ``transitions``."""

    state: str


@cache
def fire(state: OrderState, trigger: Trigger) -> OrderState:
    """The state ``trigger`` leads to from ``state``; :class:`InvalidTransition` if the table has no such edge.

    The machine has no callbacks or conditions, so its answer depends on (state, trigger) only: it is asked
    once per pair and remembered (adding a model to ``transitions`` costs ~70 us, the lookup ~0.1 us).
    """
    model = _Order()
    _MACHINE.add_model(model, initial=state.value)
    try:
        fire_trigger: Any = getattr(model, trigger.value)
        fire_trigger()
    except MachineError as exc:
        raise InvalidTransition(f"{trigger.value!r} is not allowed from {state.value!r}") from exc
    finally:
        _MACHINE.remove_model(model)
    return OrderState(model.state)
