"""SP-API connector: LWA tokens, regional endpoints, per-seller rate limits and the Solicitations client.

Modules, each owning one concern:

* :mod:`.client` - :class:`SolicitationsClient`, the only thing the sender calls;
* :mod:`.notifications` - :class:`NotificationsClient`, destinations and subscriptions (``solicit sellers subscribe``),
  with :mod:`.notification_responses` reading its answers;
* :mod:`.orders` - :class:`OrdersClient`, a seller's orders from Orders v0 ``getOrders`` (backfill, reconciliation);
* :mod:`.results` - what a call tells about an order (sent, not available, outside the window, offered);
* :mod:`.errors` - what went wrong, named for what the caller does next (the tree is in its docstring);
* :mod:`.lwa` - access tokens per seller (cache, single flight, refresh ahead of expiry);
* :mod:`.ratelimit` - token buckets per (seller, operation);
* :mod:`.endpoints` - marketplace -> regional base URL, and the override;
* :mod:`.responses` - the pure mapping from an HTTP response to a result or error;
* :mod:`.credentials` - secrets as values that never print themselves;
* :mod:`.observe` - what the client tells an observer (each HTTP attempt, each failed LWA exchange), for metrics.

May import ``statemachine`` (the marketplace table) and ``connectors.clock``; never ``streams``.
"""

from .client import OPERATION_CREATE, OPERATION_GET, ClientConfig, SolicitationsClient, user_agent
from .credentials import AppCredentials, SellerCredentials
from .endpoints import DEFAULT_LWA_TOKEN_URL, REGION_BASE_URLS, base_url_for
from .errors import (
    AccessDenied,
    AppCredentialsRejected,
    AuthorizationRevoked,
    RejectedRequest,
    RetryLater,
    SellerNeedsAttention,
    SpApiError,
    UnknownMarketplace,
)
from .notifications import NotificationsClient
from .observe import LWA_FAILURE_REASONS, CallObserved, CallObserver, LwaFailure, LwaObserver
from .orders import OPERATION_GET_ORDERS, AmazonOrder, OrdersClient, OrdersPage, OrdersQuery
from .results import ActionsResult, CreateResult, NotAvailable, OutsideWindow, Sent

__all__ = [
    "DEFAULT_LWA_TOKEN_URL",
    "LWA_FAILURE_REASONS",
    "OPERATION_CREATE",
    "OPERATION_GET",
    "OPERATION_GET_ORDERS",
    "REGION_BASE_URLS",
    "AccessDenied",
    "ActionsResult",
    "AmazonOrder",
    "AppCredentials",
    "AppCredentialsRejected",
    "AuthorizationRevoked",
    "CallObserved",
    "CallObserver",
    "ClientConfig",
    "CreateResult",
    "LwaFailure",
    "LwaObserver",
    "NotAvailable",
    "NotificationsClient",
    "OrdersClient",
    "OrdersPage",
    "OrdersQuery",
    "OutsideWindow",
    "RejectedRequest",
    "RetryLater",
    "SellerCredentials",
    "SellerNeedsAttention",
    "Sent",
    "SolicitationsClient",
    "SpApiError",
    "UnknownMarketplace",
    "base_url_for",
    "user_agent",
]
