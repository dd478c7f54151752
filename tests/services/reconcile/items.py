"""Notification items for one simulated card order, step by step, as D1 sends them."""

from __future__ import annotations

from typing import Any

START = "2026-03-02T09:15:04.120Z"


def item(
    card_id: str,
    status: str,
    *,
    shipment_status: str | None = None,
    due_date: str | None = None,
    operation: str = "PRODUCE",
) -> dict[str, Any]:
    """One PRODUCE item for `card_id` at `status` (details.status)."""
    top = {
        "CARD_SHIPPED": "SUCCESSFUL",
        "DATA_EXCEPTION": "FAILED",
        "CARD_PROD_CANCELED": "FAILED",
    }.get(status, "PENDING")
    payload: dict[str, Any] = {
        "operationId": f"op-{card_id}",
        "operation": operation,
        "status": top,
        "startTime": START,
        "cardId": card_id,
        "details": {"status": status},
    }
    if due_date:
        payload["details"]["dueDate"] = due_date
    if shipment_status:
        payload["endTime"] = "2026-03-04T16:40:51.007Z"
        payload["details"]["shipment"] = {
            "carrier": "ups",
            "trackingNumber": f"1Z{card_id}",
            "trackingUrl": f"https://www.ups.com/track?tracknum=1Z{card_id}",
            "status": shipment_status,
            "message": shipment_status.replace("_", " ").lower(),
        }
    return payload


def body(*items: dict[str, Any]) -> dict[str, Any]:
    return {"operations": list(items)}
