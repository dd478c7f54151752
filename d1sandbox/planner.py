"""Turns simulated orders into what D1 puts on the wire: batches with duplicates, reordering, drops.

The planner is a pure generator driven by one seeded random generator: it yields `Happened` when
an order takes a step (the truth) and `Post` when a batch is ready to be sent. Nothing here does
I/O, so the same seed and flags always give the same sequence of events.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from d1sandbox.lifecycle import OrderRates, SimulatedOrder, order_create
from d1sandbox.state import ItemKey

# Copies re-sent "later" arrive after this many further batches of the same issuer.
LATE_DUPLICATE_BATCHES = (1, 5)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SimulatedClock:
    """Deterministic time: starts at `epoch` and moves a few seconds per step."""

    def __init__(self, *, epoch: datetime, rng: random.Random) -> None:
        self._moment = epoch
        self._rng = rng

    def now(self) -> datetime:
        return self._moment

    def tick(self) -> None:
        self._moment += timedelta(milliseconds=self._rng.randint(500, 10_000))


@dataclass(frozen=True)
class DeliveryRates:
    """How faithfully notifications reach the portal, as fractions of the items generated."""

    duplicate: float = 0.0
    reorder: float = 0.0
    drop: float = 0.0
    batch_max: int = 1


@dataclass(frozen=True)
class PlannedItem:
    key: ItemKey
    item: dict[str, Any]


@dataclass(frozen=True)
class Happened:
    """An order took a step: the item is part of the truth whether or not it is delivered."""

    key: ItemKey
    item: dict[str, Any]
    dropped: bool


@dataclass(frozen=True)
class Post:
    """One POST to the portal: one issuer, one correlation id, the item copies in wire order."""

    issuer_id: str
    correlation_id: str
    items: tuple[PlannedItem, ...]

    def body(self) -> bytes:
        operations = [planned.item for planned in self.items]
        return json.dumps({"operations": operations}, separators=(",", ":")).encode()


@dataclass
class PlanCounters:
    orders: int = 0
    generated: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    batches: int = 0


@dataclass
class _Entry:
    """An item waiting in an issuer's outbox."""

    planned: PlannedItem
    twin: bool = False  # a duplicate copy travels in the same batch
    followers: list[_Entry] = field(default_factory=list)  # held-back items released after it

    @property
    def card(self) -> tuple[str, str]:
        return (self.planned.key.card_id, self.planned.key.operation_id)


@dataclass
class _IssuerChannel:
    outbox: deque[_Entry] = field(default_factory=deque)
    held: dict[tuple[str, str], list[_Entry]] = field(default_factory=dict)
    deferred: list[tuple[int, _Entry]] = field(default_factory=list)
    batches_emitted: int = 0
    next_batch_size: int = 1


class DeliveryPlanner:
    """Drives orders step by step and decides how each item reaches the portal."""

    def __init__(
        self,
        *,
        issuer_ids: list[str],
        orders: int,
        seed: int,
        run_number: int,
        order_rates: OrderRates,
        delivery: DeliveryRates,
        clock: Clock,
        continuous: bool = False,
        in_flight: int = 50,
    ) -> None:
        if not issuer_ids:
            raise ValueError("at least one issuer id is needed")
        self.issuer_ids = list(issuer_ids)
        self.orders_total = orders
        self.seed = seed
        self.run_number = run_number
        self.order_rates = order_rates
        self.delivery = delivery
        self.clock = clock
        self.continuous = continuous
        # In continuous mode --orders is how many orders are on the way at any moment.
        self.in_flight = max(1, orders if continuous else min(orders, in_flight))
        self.counters = PlanCounters()
        self._rng = random.Random(f"d1sandbox:{seed}:{run_number}:delivery")
        self._channels = {issuer_id: _IssuerChannel() for issuer_id in self.issuer_ids}
        for channel in self._channels.values():
            channel.next_batch_size = self._batch_size_draw()

    # ------------------------------------------------------------------ the event stream
    def events(self) -> Iterator[Happened | Post]:
        active: list[SimulatedOrder] = []
        while True:
            while len(active) < self.in_flight and (
                self.continuous or self.counters.orders < self.orders_total
            ):
                active.append(self._order_start())
            if not active:
                break
            position = self._rng.randrange(len(active))
            order = active[position]
            step_index = order.next_step
            item = order.advance(now=self.clock.now())
            if isinstance(self.clock, SimulatedClock):
                self.clock.tick()
            key = ItemKey(order.issuer_id, order.card_id, order.operation_id, step_index)
            if order.finished:
                active.pop(position)
            yield from self._item_route(
                planned=PlannedItem(key=key, item=item), has_successor=not order.finished
            )
        for issuer_id in self.issuer_ids:
            yield from self._channel_flush(issuer_id=issuer_id)

    def _order_start(self) -> SimulatedOrder:
        index = self.counters.orders + 1
        self.counters.orders = index
        issuer_id = self.issuer_ids[(index - 1) % len(self.issuer_ids)]
        order_rng = random.Random(f"d1sandbox:{self.seed}:{self.run_number}:order:{index}")
        prefix = f"s{self.seed}-r{self.run_number}-{index:06d}"
        return order_create(
            issuer_id=issuer_id,
            card_id=f"card-{prefix}",
            operation_id=f"op-{prefix}-{order_rng.getrandbits(40):010x}",
            rng=order_rng,
            rates=self.order_rates,
        )

    # ------------------------------------------------------------------ routing one item
    def _item_route(
        self, *, planned: PlannedItem, has_successor: bool
    ) -> Iterator[Happened | Post]:
        rng = self._rng
        channel = self._channels[planned.key.issuer_id]
        card = (planned.key.card_id, planned.key.operation_id)
        self.counters.generated += 1

        dropped = rng.random() < self.delivery.drop
        yield Happened(key=planned.key, item=planned.item, dropped=dropped)
        if dropped:
            self.counters.dropped += 1
        else:
            hold = has_successor and rng.random() < self.delivery.reorder
            entry = _Entry(planned=planned)
            if rng.random() < self.delivery.duplicate:
                self.counters.duplicated += 1
                # A held item's copy stays with it, so the copy cannot undo the reordering.
                if hold or rng.random() < 0.5:
                    entry.twin = True
                else:
                    due = channel.batches_emitted + rng.randint(*LATE_DUPLICATE_BATCHES)
                    channel.deferred.append((due, _Entry(planned=planned)))
            if hold:
                self.counters.reordered += 1
                channel.held.setdefault(card, []).append(entry)
            else:
                # Items held back for this card go out only after the batch carrying this one.
                entry.followers.extend(channel.held.pop(card, []))
                channel.outbox.append(entry)
        if not has_successor and card in channel.held:
            # Every later step was dropped: nothing left to overtake, release what was held.
            channel.outbox.extend(channel.held.pop(card))
        yield from self._batches_emit(issuer_id=planned.key.issuer_id, final=False)

    # ------------------------------------------------------------------ batching
    def _batches_emit(self, *, issuer_id: str, final: bool) -> Iterator[Post]:
        channel = self._channels[issuer_id]
        while channel.outbox and (final or len(channel.outbox) >= channel.next_batch_size):
            yield self._batch_take(issuer_id=issuer_id, channel=channel)

    def _batch_take(self, *, issuer_id: str, channel: _IssuerChannel) -> Post:
        size = channel.next_batch_size
        taken: list[_Entry] = []
        wire: list[PlannedItem] = []
        cards: set[tuple[str, str]] = set()
        while channel.outbox and len(wire) < size:
            entry = channel.outbox[0]
            # One item per card per batch keeps "held back" meaning "arrives in a later POST".
            if entry.card in cards:
                break
            channel.outbox.popleft()
            taken.append(entry)
            cards.add(entry.card)
            wire.append(entry.planned)
            if entry.twin:
                if len(wire) < size:
                    wire.append(entry.planned)
                else:
                    # No room left: the copy leads the next batch instead.
                    channel.outbox.appendleft(_Entry(planned=entry.planned))
        channel.batches_emitted += 1
        self.counters.batches += 1
        channel.next_batch_size = self._batch_size_draw()
        for entry in taken:
            channel.outbox.extend(entry.followers)
        due_now = [entry for due, entry in channel.deferred if due <= channel.batches_emitted]
        channel.deferred = [
            (due, e) for due, e in channel.deferred if due > channel.batches_emitted
        ]
        channel.outbox.extend(due_now)
        correlation_id = f"sbx-{self._rng.getrandbits(64):016x}"
        return Post(issuer_id=issuer_id, correlation_id=correlation_id, items=tuple(wire))

    def _channel_flush(self, *, issuer_id: str) -> Iterator[Post]:
        """End of a finite run: send everything still waiting, late duplicates included."""
        channel = self._channels[issuer_id]
        while channel.outbox or channel.deferred or channel.held:
            for entries in channel.held.values():
                channel.outbox.extend(entries)
            channel.held.clear()
            if not channel.outbox:
                channel.outbox.extend(entry for _, entry in channel.deferred)
                channel.deferred.clear()
            yield from self._batches_emit(issuer_id=issuer_id, final=True)

    def _batch_size_draw(self) -> int:
        return self._rng.randint(1, max(1, self.delivery.batch_max))
