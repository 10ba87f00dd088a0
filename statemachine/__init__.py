"""Pure order core: ORDER_CHANGE models and parser, the order record, the state machine and timing policy.

No I/O, no asyncio, no Faust/Kafka/HTTP/AWS imports and no wall clock: time is always an argument.
``tests/unit/statemachine/test_purity.py`` enforces this.
"""

from statemachine.apply import Decision, Event, apply
from statemachine.errors import InvalidNotification, InvalidTransition, OrderFlowError
from statemachine.events import (
    ManualAction,
    ManualActionKind,
    OrderChanged,
    OrderEvent,
    SendCommand,
    SendResult,
    SendResultKind,
    SendStarted,
    StateChanged,
    TimerFired,
)
from statemachine.notification import Notification
from statemachine.parse import parse_notification
from statemachine.policy import DEFAULT_POLICY, MarketplacePolicy, Policy, SellerPolicy, SendHours, Timing
from statemachine.record import TERMINAL_STATES, OrderRecord, OrderState, order_key

__all__ = [
    "DEFAULT_POLICY",
    "TERMINAL_STATES",
    "Decision",
    "Event",
    "InvalidNotification",
    "InvalidTransition",
    "ManualAction",
    "ManualActionKind",
    "MarketplacePolicy",
    "Notification",
    "OrderChanged",
    "OrderEvent",
    "OrderFlowError",
    "OrderRecord",
    "OrderState",
    "Policy",
    "SellerPolicy",
    "SendCommand",
    "SendHours",
    "SendResult",
    "SendResultKind",
    "SendStarted",
    "StateChanged",
    "TimerFired",
    "Timing",
    "apply",
    "order_key",
    "parse_notification",
]
