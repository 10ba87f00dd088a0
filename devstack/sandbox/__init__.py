"""A local stand-in for Amazon's LWA and Solicitations API, faithful to the official model, for demo and tests.

Amazon's own SP-API sandbox only replays static mocks (one order id, no rules, no real throttling); this one
enforces the rules that matter to us: token exchange and expiry, per-(seller, operation) rate limits with 429,
order ownership, marketplace match, the 5-30 day window in business time, one solicitation per order, and it
injects faults (500/503 before any effect, "ambiguous" 500 after the effect, latency). A ledger records every call
and every solicitation created. Modules: :mod:`.state` (the rules), :mod:`.protocol` (wire shapes and Amazon's
texts), :mod:`.app` (HTTP and the admin API), :mod:`.server` (running it), :mod:`.model` (data),
:mod:`.throttle` (Amazon's bucket), :mod:`.command` (``solicit sandbox``), :mod:`.orders` (Orders v0
``getOrders`` over the same orders). A measured multi-seller load through
the real client lives in ``bench/sandbox_load.py``.

The rules never use the SP-API client they referee.
"""

from .model import FaultConfig, LedgerCall, LedgerSolicitation, OrderIn, SandboxConfig, ScriptedFault, SellerIn
from .protocol import MESSAGES
from .server import SandboxServer, serve
from .state import SandboxState, window_open

__all__ = [
    "MESSAGES",
    "FaultConfig",
    "LedgerCall",
    "LedgerSolicitation",
    "OrderIn",
    "SandboxConfig",
    "SandboxServer",
    "SandboxState",
    "ScriptedFault",
    "SellerIn",
    "serve",
    "window_open",
]
