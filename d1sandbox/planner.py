"""Turns simulated orders into what D1 puts on the wire: batches with duplicates, reordering, drops.

The planner is a pure generator driven by seeded random generators: it yields `OrderPlaced` when
the issuer places an order, `Happened` when an order takes a step (the sandbox's timeline, on
its own clock) and `Post` when a batch is ready to be sent. Orders take their steps when their
stage times say so (a schedule, not a round robin). Nothing here does I/O apart from the clock's
wait, so the same seed and flags always give the same sequence of events.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from d1sandbox.lifecycle import (
    PRODUCE,
    REISSUE_SECONDS,
    OrderRates,
    SimulatedOrder,
    order_create,
)
from d1sandbox.state import ItemKey
from d1sandbox.vocabulary import digit_run, input_file_name

# Copies re-sent "later" arrive after this many further batches of the same issuer.
LATE_DUPLICATE_BATCHES = (1, 5)
# A new order's first step comes within this many seconds (scale 1) of it being placed.
ORDER_START_SECONDS = 5.0
# The file orders of one run are spread over this many input files.
FILES_PER_RUN = 4


class Clock(Protocol):
    realtime: bool

    def now(self) -> datetime: ...

    def wait_until(self, moment: datetime) -> None: ...


class SimulatedClock:
    """Deterministic time: starts at `epoch` and jumps to each scheduled step."""

    realtime = False

    def __init__(self, *, epoch: datetime, rng: random.Random | None = None) -> None:
        self._moment = epoch

    def now(self) -> datetime:
        return self._moment

    def wait_until(self, moment: datetime) -> None:
        self._moment = max(self._moment, moment)


class WallClock:
    """Real time: waiting for a step sleeps (Ctrl-C interrupts the sleep)."""

    realtime = True

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait_until(self, moment: datetime) -> None:
        delay = (moment - datetime.now(UTC)).total_seconds()
        if delay > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class DeliveryRates:
    """How faithfully notifications reach the portal, as fractions of the items generated."""

    duplicate: float = 0.0
    reorder: float = 0.0
    drop: float = 0.0
    batch_max: int = 1
    late_copy: float = 0.0  # completed orders whose earlier PENDING item is re-sent after the end
    pair: float = 0.0  # items sent in the same POST as the next item of their operation


@dataclass(frozen=True)
class PlannedItem:
    key: ItemKey
    item: dict[str, Any]


@dataclass(frozen=True)
class OrderPlaced:
    """The issuer placed an order, before D1 says anything about it.

    `registration` is what the issuer knows (the registration API's body); None for a
    tracking-hub order, which the issuer did not place at D1.
    """

    issuer_id: str
    card_id: str
    operation_id: str
    operation: str
    registration: dict[str, str] | None
    silent: bool


@dataclass(frozen=True)
class Happened:
    """An order took a step: the item is part of the timeline whether or not it is delivered."""

    key: ItemKey
    item: dict[str, Any]
    dropped: bool
    at: datetime | None = None  # on the sandbox's clock


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
    reissued: int = 0
    silent: int = 0
    generated: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    late_copies: int = 0
    paired: int = 0
    batches: int = 0


@dataclass
class _Entry:
    """An item waiting in an issuer's outbox."""

    planned: PlannedItem
    twin: bool = False  # a duplicate copy travels in the same batch
    # Earlier items of the same operation that travel in the same POST (two items of one
    # operation in one POST), in the order they are put on the wire.
    companions: list[PlannedItem] = field(default_factory=list)
    followers: list[_Entry] = field(default_factory=list)  # released after its batch

    @property
    def card(self) -> tuple[str, str]:
        return (self.planned.key.card_id, self.planned.key.operation_id)


@dataclass
class _IssuerChannel:
    outbox: deque[_Entry] = field(default_factory=deque)
    held: dict[tuple[str, str], list[_Entry]] = field(default_factory=dict)
    paired: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    deferred: list[tuple[int, _Entry]] = field(default_factory=list)
    batches_emitted: int = 0
    next_batch_size: int = 1


class DeliveryPlanner:
    """Drives orders on their schedule and decides how each item reaches the portal."""

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
        time_scale: float = 1.0,
        no_shipment_issuers: frozenset[str] = frozenset(),
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
        self.time_scale = time_scale
        self.no_shipment_issuers = frozenset(no_shipment_issuers)
        # In continuous mode --orders is how many orders are on the way at any moment.
        self.in_flight = max(1, orders if continuous else min(orders, in_flight))
        self.counters = PlanCounters()
        self.file_names = tuple(
            input_file_name(seed=seed, run_number=run_number, number=n)
            for n in range(1, FILES_PER_RUN + 1)
        )
        self._rng = random.Random(f"d1sandbox:{seed}:{run_number}:delivery")
        self._channels = {issuer_id: _IssuerChannel() for issuer_id in self.issuer_ids}
        for channel in self._channels.values():
            channel.next_batch_size = self._batch_size_draw()
        # The items of each order's main operation, by position, for late copies.
        self._sent: dict[str, list[PlannedItem]] = {}
        self._dropped: set[ItemKey] = set()

    # ------------------------------------------------------------------ the event stream
    def events(self) -> Iterator[OrderPlaced | Happened | Post]:
        schedule: list[tuple[datetime, int, SimulatedOrder]] = []
        tiebreak = itertools.count()

        def place(order: SimulatedOrder, *, after: float) -> Iterator[OrderPlaced]:
            due = self.clock.now() + timedelta(seconds=after * self.time_scale)
            heapq.heappush(schedule, (due, next(tiebreak), order))
            if order.silent:
                self.counters.silent += 1
            yield OrderPlaced(
                issuer_id=order.issuer_id,
                card_id=order.card_id,
                operation_id=order.operation_id,
                operation=order.operation,
                registration=order.registration() if order.operation == PRODUCE else None,
                silent=order.silent,
            )

        while True:
            while len(schedule) < self.in_flight and (
                self.continuous or self.counters.orders < self.orders_total
            ):
                order = self._order_start()
                yield from place(order, after=self._rng.uniform(0, ORDER_START_SECONDS))
            if not schedule:
                break
            due, _, order = heapq.heappop(schedule)
            if due > self.clock.now():
                if self.clock.realtime:
                    # Nothing else is due before then: send what waits instead of holding it.
                    for issuer_id in self.issuer_ids:
                        yield from self._batches_emit(issuer_id=issuer_id, final=True)
                self.clock.wait_until(due)
            emitted = order.advance(now=self.clock.now())
            key = ItemKey(order.issuer_id, order.card_id, emitted.operation_id, emitted.position)
            planned = PlannedItem(key=key, item=emitted.item)
            late_copy = None
            if emitted.operation_id == order.operation_id:
                self._sent.setdefault(order.operation_id, []).append(planned)
                if order.finished:
                    late_copy = self._late_copy_pick(order)
            yield from self._item_route(
                planned=planned,
                has_successor=not emitted.last_of_operation,
                silent=order.silent,
                late_copy=late_copy,
            )
            if not order.finished:
                heapq.heappush(
                    schedule,
                    (
                        self.clock.now()
                        + timedelta(seconds=order.delay_after_current * self.time_scale),
                        next(tiebreak),
                        order,
                    ),
                )
                continue
            for planned_item in self._sent.pop(order.operation_id, []):
                self._dropped.discard(planned_item.key)
            if order.reissue:
                yield from place(self._reissue(order), after=REISSUE_SECONDS)
        for issuer_id in self.issuer_ids:
            yield from self._channel_flush(issuer_id=issuer_id)

    def _order_start(self) -> SimulatedOrder:
        index = self.counters.orders + 1
        self.counters.orders = index
        issuer_id = self.issuer_ids[(index - 1) % len(self.issuer_ids)]
        order_rng = random.Random(f"d1sandbox:{self.seed}:{self.run_number}:order:{index}")
        prefix = f"s{self.seed}-r{self.run_number}-{index:06d}"
        # Its own generator, so that drawing ids does not change the paths drawn for a seed.
        ids_rng = random.Random(f"d1sandbox:{self.seed}:{self.run_number}:ids:{index}")
        digit_ids = ids_rng.random() < self.order_rates.numeric_id_rate
        card_id = f"card-{prefix}"
        if digit_ids:
            # The issuer chose a 16-digit id that passes the Luhn check: still an identifier.
            card_id = digit_run(seed_text=f"card:{prefix}", length=16, luhn=True)
        return order_create(
            issuer_id=issuer_id,
            card_id=card_id,
            operation_id=f"op-{prefix}-{order_rng.getrandbits(40):010x}",
            rng=order_rng,
            rates=self.order_rates,
            file_names=self.file_names,
            digit_ids=digit_ids,
            no_shipment=issuer_id in self.no_shipment_issuers,
        )

    def _reissue(self, first: SimulatedOrder) -> SimulatedOrder:
        """The card ordered again (a replacement): a second PRODUCE operation, same cardId."""
        self.counters.reissued += 1
        rng = random.Random(f"{first.operation_id}:reissue")
        prefix = first.operation_id.removeprefix("op-").rsplit("-", 1)[0]
        return order_create(
            issuer_id=first.issuer_id,
            card_id=first.card_id,
            operation_id=f"op-{prefix}-b-{rng.getrandbits(40):010x}",
            rng=rng,
            rates=self.order_rates,
            file_names=self.file_names,
            reissue_of=first,
            digit_ids=first.card_id.isdigit(),
            no_shipment=first.issuer_id in self.no_shipment_issuers,
        )

    def _late_copy_pick(self, order: SimulatedOrder) -> PlannedItem | None:
        """The earlier PENDING item D1 re-sends after the order's last word, if any."""
        if order.silent:
            return None
        sent = self._sent.get(order.operation_id, [])
        position = order.late_copy_position()
        if position is None and self._rng.random() < self.delivery.late_copy:
            position = order.last_pending_position()
        # Only what went out can be sent again.
        if position is None or position >= len(sent) or sent[position].key in self._dropped:
            return None
        self.counters.late_copies += 1
        return sent[position]

    # ------------------------------------------------------------------ routing one item
    def _item_route(
        self,
        *,
        planned: PlannedItem,
        has_successor: bool,
        silent: bool = False,
        late_copy: PlannedItem | None = None,
    ) -> Iterator[Happened | Post]:
        rng = self._rng
        channel = self._channels[planned.key.issuer_id]
        card = (planned.key.card_id, planned.key.operation_id)
        self.counters.generated += 1

        dropped = rng.random() < self.delivery.drop or silent
        yield Happened(key=planned.key, item=planned.item, dropped=dropped, at=self.clock.now())
        entry: _Entry | None = None
        if dropped:
            self.counters.dropped += 1
            if planned.key.operation_id in self._sent:
                self._dropped.add(planned.key)
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
            waiting = False
            partner = channel.paired.pop(card, None)
            if partner is not None:
                # Two items of one operation in one POST (D1 batches what it has).
                entry.companions.append(partner.planned)
                if partner.twin:
                    entry.companions.append(partner.planned)
                entry.followers.extend(partner.followers)
            elif not hold and has_successor and rng.random() < self.delivery.pair:
                self.counters.paired += 1
                channel.paired[card] = entry
                waiting = True
            if waiting:
                pass  # goes out with the next item of its operation
            elif hold:
                self.counters.reordered += 1
                channel.held.setdefault(card, []).append(entry)
            else:
                # Items held back for this card go out only after the batch carrying this one.
                entry.followers.extend(channel.held.pop(card, []))
                channel.outbox.append(entry)
        if dropped and card in channel.paired:
            # Its partner never goes out: the waiting item travels alone.
            channel.outbox.append(channel.paired.pop(card))
        if not has_successor and card in channel.held:
            # Every later step was dropped: nothing left to overtake, release what was held.
            channel.outbox.extend(channel.held.pop(card))
        if late_copy is not None:
            # The copy goes out in a batch after the one carrying the order's last word.
            if entry is not None:
                entry.followers.append(_Entry(planned=late_copy))
            else:
                channel.outbox.append(_Entry(planned=late_copy))
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
            if entry.companions and self._rng.random() < 0.5:
                wire.extend([*entry.companions, entry.planned])
            else:
                wire.extend([entry.planned, *entry.companions])
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
        channel.outbox.extend(channel.paired.values())
        channel.paired.clear()
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
