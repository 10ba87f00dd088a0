"""Errors of the pure core, named for what the caller does next.

Our exception hierarchy::

    OrderFlowError                 root of every error raised by statemachine/
    ├── InvalidNotification        bad input: dead-letter it with ``reason``, never retry
    └── InvalidTransition          a bug: an event the state table does not allow was triggered
"""

from __future__ import annotations


class OrderFlowError(Exception):
    """Root of the core's errors."""


class InvalidNotification(OrderFlowError):
    """The body is not a usable ORDER_CHANGE notification. Dead-letter it; retrying cannot help.

    ``reason`` is a human-readable sentence naming the field and what was wrong with it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidTransition(OrderFlowError):
    """``apply`` asked the state table for a transition it does not have: a programming error."""
