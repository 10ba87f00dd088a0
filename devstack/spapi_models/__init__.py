"""Amazon's official SP-API models, vendored (see SOURCES.md): :func:`path` finds one by file name."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

SOLICITATIONS = HERE / "solicitations.json"
NOTIFICATIONS = HERE / "notifications.json"
ORDER_CHANGE_SCHEMA = HERE / "OrderChangeNotification.json"
ORDER_CHANGE_EXAMPLE = HERE / "OrderChangeNotification.example.json"
ORDERS_V0 = HERE / "ordersV0.json"
ORDERS_2026 = HERE / "orders_2026-01-01.json"
MARKETPLACES = HERE / "marketplaces.tsv"


def path(name: str) -> Path:
    """The vendored file ``name``; :class:`FileNotFoundError` when it is not vendored."""
    found = HERE / name
    if not found.is_file():
        raise FileNotFoundError(f"{name} is not among the vendored SP-API models ({HERE})")
    return found
