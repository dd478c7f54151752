"""Preparing a body's items for ingest: made storable, masked, fingerprinted, checked, counted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from tracking.domain.d1_items import D1Item, D1Payload, ItemCheck, check_item
from tracking.domain.masking import free_text_mask, mask_item_text_fields
from tracking.domain.validation import item_storable


def item_fingerprint(item: D1Payload) -> str:
    """SHA-256 of the item's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class IngestResult:
    """What one ingest did: counts per kind and the orders it touched."""

    item_count: int = 0
    new_count: int = 0
    duplicate_count: int = 0
    rejected_count: int = 0
    order_ids: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@dataclass
class PreparedItem:
    """One distinct item of a body: the typed item, its check, fingerprint and copies sent."""

    item: D1Item
    check: ItemCheck
    fingerprint: str
    copies: int = 1

    @property
    def raw(self) -> D1Payload:
        """The payload as stored (what the fingerprint is taken of)."""
        return self.item.payload

    @property
    def is_foldable(self) -> bool:
        """Valid and of a tracked operation: it has an order, and the fold reads it."""
        return self.check.is_valid and self.check.is_tracked

    @property
    def order_key(self) -> tuple[str, str]:
        return (self.check.card_id, self.check.operation_id)


@dataclass
class IngestBatch:
    """A body's items ready to store: masked, fingerprinted, checked, copies counted.

    `result` already holds what needs no database: the item count and the rejected items.
    """

    items: dict[str, PreparedItem]
    result: IngestResult

    @property
    def total(self) -> int:
        return sum(i.copies for i in self.items.values())

    def order_keys(self) -> dict[tuple[str, str], str]:
        """The (card, operation) of every foldable item, with its operation, in item order."""
        keys: dict[tuple[str, str], str] = {}
        for item in self.items.values():
            if item.is_foldable:
                keys.setdefault(item.order_key, item.check.operation)
        return keys


def ingest_prepare(operations: Sequence[D1Payload]) -> IngestBatch:
    """Mask, fingerprint and check `operations`; copies inside the body are counted, not kept."""
    result = IngestResult(item_count=len(operations))
    items: dict[str, PreparedItem] = {}
    for sent in operations:
        storable = item_storable(sent)  # what no column can hold is escaped; the item invalid
        # Identifiers kept exactly as sent, card numbers in the text masked (data_care).
        raw = mask_item_text_fields(storable.value)
        fingerprint = item_fingerprint(raw)
        if fingerprint in items:
            items[fingerprint].copies += 1
            continue
        check = check_item(raw, unstorable=free_text_mask(storable.problem))
        items[fingerprint] = PreparedItem(D1Item.of(raw), check, fingerprint)
    for item in items.values():
        if not item.check.is_valid:
            result.rejected_count += item.copies
            result.errors.append(item.check.error)
    return IngestBatch(items=items, result=result)
