"""Ingest: D1's items stored as events, and the orders they touch re-derived (see `engine`)."""

from tracking.intake.ingest.prepare import (
    IngestBatch,
    IngestResult,
    PreparedItem,
    ingest_prepare,
    item_fingerprint,
)
from tracking.intake.ingest.rederive import orders_derive, refresh_orders
from tracking.intake.ingest.steps import delivery_counts_set, ingest_operations

__all__ = [
    "IngestBatch",
    "IngestResult",
    "PreparedItem",
    "delivery_counts_set",
    "ingest_operations",
    "ingest_prepare",
    "item_fingerprint",
    "orders_derive",
    "refresh_orders",
]
