"""The verdict of a chaos run: figures from the sandbox's ledger (what Amazon saw) and ``outcomes`` (what we said).

"Every eligible order solicited exactly once, inside its window; nothing lost; nothing misreported" becomes:

* **duplicates**: orders with more than one solicitation in the ledger;
* **misses**: eligible orders (``plan.ChaosOrder.eligible``) with none;
* **out of window**: solicitations created outside [EDD + 5 d, LDD + 30 d] of Amazon's truth for the order;
* **ineligible solicitations**: solicitations for canceled, pending, closed, future or unregistered-seller orders
  (or for an order the plan does not know);
* **disagreements**: orders whose final state on ``outcomes`` is ``sent`` without a solicitation in the ledger, or
  the other way round (the audit trail must say what Amazon did);
* **isolation breaches**: an SP-API call for one seller's order made with another seller's access token (the
  sandbox records the seller a token belongs to), or a solicitation recorded for the wrong seller;
* **lost**: orders of the plan that never showed up on ``outcomes``; **wrong state**: orders that ended in
  another state than expected (lost ones included).

Any of these fails the run. Calls for ineligible orders and creates repeated after a solicitation are printed
for information: Amazon refuses them, so they cost quota but solicit nobody.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.chaos.plan import ChaosPlan

SP_API_OPERATIONS = ("getSolicitationActionsForOrder", "createProductReviewAndSellerFeedbackSolicitation")
CREATE = "createProductReviewAndSellerFeedbackSolicitation"


@dataclass
class RunCounters:
    """What the harness did to the run (filled by the chaos driver)."""

    kills: int = 0
    clean_restarts: int = 0
    kept_partitions: int = 0
    """Partitions whose due index and counters a restarted worker took from its checkpoint (not rebuilt)."""
    broker_restarts: int = 0
    bridge_kills: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    """``name (exit code)`` of every service process that died without being killed by the harness."""
    storm_429s: int = 0
    sqs_messages: int = 0
    direct_records: int = 0
    settled: bool = False
    seconds: float = 0.0


@dataclass
class Figures:
    """Every figure of the verdict; :meth:`failures` lists what breaks the promise."""

    orders: int
    eligible: int
    solicitations: int
    duplicates: list[str]
    misses: list[str]
    out_of_window: list[str]
    ineligible_solicited: dict[str, list[str]]
    disagreements: list[str]
    breaches: list[str]
    lost: list[str]
    wrong_state: list[str]
    ineligible_calls: Counter[str]
    repeated_creates: int
    calls_by_outcome: Counter[str]
    dead_letters: int
    largest_dead_letter: int
    counters: RunCounters

    def failures(self) -> list[str]:
        checks = {
            "duplicates (solicited more than once)": self.duplicates,
            "misses (eligible, never solicited)": self.misses,
            "solicitations outside the window": self.out_of_window,
            "solicitations of ineligible orders": [k for keys in self.ineligible_solicited.values() for k in keys],
            "disagreements (outcomes vs ledger)": self.disagreements,
            "isolation breaches": self.breaches,
            "lost orders (never on outcomes)": self.lost,
            "orders in the wrong final state": self.wrong_state,
        }
        return [f"{len(items)} {name}: {items[:6]}" for name, items in checks.items() if items]

    def examples(self, per_kind: int = 2) -> list[str]:
        """A few order keys of each kind of failure, for the evidence printed with a failed run."""
        groups = [
            self.misses,
            self.duplicates,
            self.out_of_window,
            [key for keys in self.ineligible_solicited.values() for key in keys],
            [entry.split()[0] for entry in self.disagreements],
            self.lost,
            self.wrong_state,
        ]
        return list(dict.fromkeys(key for group in groups for key in group[:per_kind]))

    def report(self) -> str:
        c = self.counters
        ineligible = {kind: len(keys) for kind, keys in sorted(self.ineligible_solicited.items())}
        rows = [
            ("orders", f"{self.orders} ({self.eligible} eligible)"),
            ("deliveries", f"{c.sqs_messages} via SQS, {c.direct_records} straight to order-changes (CRC32)"),
            ("worker kills (SIGKILL)", c.kills),
            (
                "clean worker restarts (SIGTERM)",
                f"{c.clean_restarts} ({c.kept_partitions} partitions kept from a checkpoint)",
            ),
            ("bridge kills (SIGKILL, mid-batch)", c.bridge_kills),
            ("broker restarts", c.broker_restarts),
            ("scripted 429s", c.storm_429s),
            ("unexpected exits", f"{len(c.unexpected_exits)} {c.unexpected_exits[:4]}"),
            ("settled", f"{c.settled} after {c.seconds:.0f} s"),
            ("SP-API calls by status/fault", dict(sorted(self.calls_by_outcome.items()))),
            ("solicitations sent", self.solicitations),
            ("duplicates", len(self.duplicates)),
            ("misses", len(self.misses)),
            ("out-of-window solicitations", len(self.out_of_window)),
            ("solicitations of canceled/pending/unknown/...", ineligible or 0),
            ("disagreements", len(self.disagreements)),
            ("isolation breaches", len(self.breaches)),
            ("lost orders", len(self.lost)),
            ("wrong final state", len(self.wrong_state)),
            ("calls for ineligible orders (info)", dict(sorted(self.ineligible_calls.items())) or 0),
            ("creates after the order was solicited (info)", self.repeated_creates),
            ("dead letters", f"{self.dead_letters} (largest {self.largest_dead_letter} bytes)"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def audit(
    plan: ChaosPlan,
    ledger: dict[str, Any],
    states: dict[str, str],
    *,
    counters: RunCounters,
    dead_letter_sizes: list[int] | None = None,
) -> Figures:
    """Compare the plan with what Amazon saw (``ledger``) and what ``outcomes`` said (``states``: key -> last dest)."""
    orders = plan.by_key()
    owners = plan.owners()
    solicited = Counter(f"{row['seller_id']}/{row['order_id']}" for row in ledger["solicitations"])
    sizes = dead_letter_sizes or []
    return Figures(
        orders=len(orders),
        eligible=len(plan.eligible()),
        solicitations=sum(solicited.values()),
        duplicates=sorted(key for key, n in solicited.items() if n > 1),
        misses=sorted(plan.eligible() - set(solicited)),
        out_of_window=out_of_window(plan, ledger["solicitations"]),
        ineligible_solicited=ineligible_solicited(plan, solicited),
        disagreements=disagreements(plan, solicited, states),
        breaches=breaches(owners, ledger),
        lost=sorted(key for key in orders if key not in states),
        wrong_state=sorted(key for key, order in orders.items() if not order.reached(states.get(key))),
        ineligible_calls=ineligible_calls(plan, ledger["calls"]),
        repeated_creates=repeated_creates(ledger),
        calls_by_outcome=calls_by_outcome(ledger["calls"]),
        dead_letters=len(sizes),
        largest_dead_letter=max(sizes, default=0),
        counters=counters,
    )


def out_of_window(plan: ChaosPlan, solicitations: list[dict[str, Any]]) -> list[str]:
    """Solicitations whose creation time (business time) lies outside Amazon's window of the order."""
    orders = plan.by_key()
    outside = []
    for row in solicitations:
        key = f"{row['seller_id']}/{row['order_id']}"
        order = orders.get(key)
        if order is None:
            continue  # counted as ineligible (unknown order)
        start, end = order.window()
        if not start <= datetime.fromisoformat(row["at"]) <= end:
            outside.append(key)
    return sorted(outside)


def ineligible_solicited(plan: ChaosPlan, solicited: Counter[str]) -> dict[str, list[str]]:
    """Solicited orders that must never be, by kind (``not-in-plan`` for orders the plan does not know)."""
    orders = plan.by_key()
    found: dict[str, list[str]] = defaultdict(list)
    for key in sorted(solicited):
        order = orders.get(key)
        if order is None:
            found["not-in-plan"].append(key)
        elif not order.eligible:
            found[order.kind].append(key)
    return dict(found)


def disagreements(plan: ChaosPlan, solicited: Counter[str], states: dict[str, str]) -> list[str]:
    """Orders where ``outcomes`` (final state ``sent`` or not) and the ledger (solicited or not) disagree."""
    wrong = []
    for order in plan.orders:
        said_sent = states.get(order.key) == "sent"
        was_sent = solicited[order.key] > 0
        if said_sent != was_sent:
            wrong.append(f"{order.key} outcomes={states.get(order.key)} ledger={solicited[order.key]}")
    return wrong


def breaches(owners: dict[str, str], ledger: dict[str, Any]) -> list[str]:
    """SP-API calls made with one seller's token for another seller's (or an unknown) order; misattributed rows."""
    found = []
    for call in ledger["calls"]:
        if call["operation"] not in SP_API_OPERATIONS or call.get("seller_id") is None:
            continue  # LWA calls carry no order; a call without a valid token acts for no seller
        owner = owners.get(call.get("order_id") or "")
        if owner != call["seller_id"]:
            found.append(f"call #{call['seq']} by {call['seller_id']} for order {call.get('order_id')} of {owner}")
    for row in ledger["solicitations"]:
        if owners.get(row["order_id"]) != row["seller_id"]:
            found.append(f"solicitation of {row['order_id']} recorded for {row['seller_id']}")
    return found


def ineligible_calls(plan: ChaosPlan, calls: list[dict[str, Any]]) -> Counter[str]:
    """SP-API calls for orders that must not be solicited, by kind (Amazon refuses them; they waste quota)."""
    kinds = {order.order_id: order.kind for order in plan.orders if not order.eligible}
    return Counter(
        kinds[call["order_id"]]
        for call in calls
        if call["operation"] in SP_API_OPERATIONS and call.get("order_id") in kinds
    )


def repeated_creates(ledger: dict[str, Any]) -> int:
    """Create calls that reached an order after its solicitation was recorded (Amazon answers 403)."""
    created_at = {row["order_id"]: row["monotonic"] for row in ledger["solicitations"]}
    return sum(
        1
        for call in ledger["calls"]
        if call["operation"] == CREATE
        and call.get("order_id") in created_at
        and call["monotonic"] > created_at[call["order_id"]]
    )


def calls_by_outcome(calls: list[dict[str, Any]]) -> Counter[str]:
    """SP-API calls by HTTP status, with injected faults named (``500 ambiguous``, ``429 scripted``, ...)."""
    out: Counter[str] = Counter()
    for call in calls:
        if call["operation"] not in SP_API_OPERATIONS:
            continue
        fault = call.get("fault")
        label = str(call["status"])
        if fault == "ambiguous":
            label += " ambiguous"
        elif fault == "429":
            label += " scripted"
        elif fault:
            label += " injected"
        out[label] += 1
    return out


def evidence(plan: ChaosPlan, key: str, ledger: dict[str, Any], history: dict[str, list[str]]) -> str:
    """One order's story for a failure report: kind, truth, ``outcomes`` history, SP-API calls."""
    order = plan.by_key().get(key)
    if order is None:
        return f"{key}: not in the plan"
    calls = [
        f"{call['operation'][:6]}:{call['status']}{'/' + call['fault'] if call.get('fault') else ''}"
        f"@{call['at'][:16]} by {call.get('seller_id')}"
        for call in ledger["calls"]
        if call.get("order_id") == order.order_id
    ]
    start, end = order.window()
    return (
        f"{key} kind={order.kind} expected={order.expected} window={start:%m-%d %H:%M}..{end:%m-%d %H:%M}\n"
        f"    outcomes: {history.get(key, [])[-6:]}\n"
        f"    calls: {calls[-8:]}"
    )
