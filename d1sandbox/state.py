"""The sandbox's timeline: every order and item `feed` generated, shared with `serve` and `verify`.

One SQLite file in WAL mode, because the three commands run as separate processes:

- `runs`: one row per feed run (seed, run number, flags, summary when it ends);
- `orders`: one row per operation of a card, keyed by (issuer_id, card_id, operation_id), with
  whether the issuer registered it at the portal and whether every notification was dropped;
- `items`: every notification item in the order it happened (`seq`, and `happened_at` on the
  sandbox's own clock), its position in its operation (`step`), the JSON exactly as D1 would
  send it, whether the planner dropped it, and when and how often the portal acknowledged it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_STATE_PATH = Path(".d1sandbox") / "state.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seed INTEGER NOT NULL,
    run_number INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    options TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    issuer_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    silent INTEGER NOT NULL DEFAULT 0,
    registered_at TEXT,
    registration TEXT,
    PRIMARY KEY (issuer_id, card_id, operation_id)
);
CREATE TABLE IF NOT EXISTS items (
    issuer_id TEXT NOT NULL,
    card_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    details_status TEXT,
    item TEXT NOT NULL,
    happened_at TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    delivered_at TEXT,
    delivered_count INTEGER NOT NULL DEFAULT 0,
    seq INTEGER,
    operation TEXT,
    PRIMARY KEY (issuer_id, card_id, operation_id, step)
);
CREATE INDEX IF NOT EXISTS items_by_card ON items (issuer_id, card_id);
"""
# Columns added since the first state files; an older file gets them on open.
ADDED_COLUMNS = {
    "orders": {
        "silent": "INTEGER NOT NULL DEFAULT 0",
        "registered_at": "TEXT",
        "registration": "TEXT",
    },
    "items": {"seq": "INTEGER", "operation": "TEXT"},
}
# Operations whose items make up a card order; productionStatus answers only these.
ORDER_OPERATIONS = ("PRODUCE", "STANDALONE_TRACKING")


@dataclass(frozen=True)
class ItemKey:
    """Identifies one generated notification item (not one copy of it on the wire)."""

    issuer_id: str
    card_id: str
    operation_id: str
    step: int


@dataclass(frozen=True)
class TruthItem:
    """One generated item as the state store keeps it."""

    key: ItemKey
    item: dict[str, Any]
    dropped: bool
    delivered_count: int
    seq: int = 0
    happened_at: str = ""


@dataclass(frozen=True)
class TruthOrder:
    """One simulated order with all its items in lifecycle order."""

    issuer_id: str
    card_id: str
    operation_id: str
    operation: str
    run_id: int
    items: list[TruthItem]  # in the order they happened
    registered: bool = False
    registration: str | None = None
    silent: bool = False

    @property
    def delivered(self) -> bool:
        return any(item.delivered_count > 0 for item in self.items)

    @property
    def start_seq(self) -> int:
        return self.items[0].seq if self.items else 0


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StateStore:
    """Thread-safe access to the state file; one connection guarded by a lock per process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._connection.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                present = {
                    row[1] for row in self._connection.execute(f"PRAGMA table_info({table})")
                }
                for name, definition in columns.items():
                    if name not in present:
                        self._connection.execute(
                            f"ALTER TABLE {table} ADD COLUMN {name} {definition}"
                        )

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # ------------------------------------------------------------------ writes (feed)
    def run_start(
        self, *, seed: int, run_number: int | None, options: dict[str, Any]
    ) -> tuple[int, int]:
        """Record a new feed run; returns (run_id, run_number). The number counts runs per seed."""
        with self._lock, self._transaction():
            if run_number is None:
                row = self._connection.execute(
                    "SELECT COALESCE(MAX(run_number), 0) + 1 FROM runs WHERE seed = ?", (seed,)
                ).fetchone()
                run_number = int(row[0])
            cursor = self._connection.execute(
                "INSERT INTO runs (seed, run_number, started_at, options) VALUES (?, ?, ?, ?)",
                (seed, run_number, utc_now_text(), json.dumps(options, sort_keys=True)),
            )
            return int(cursor.lastrowid or 0), run_number

    def run_finish(self, *, run_id: int, summary: dict[str, Any]) -> None:
        with self._lock, self._transaction():
            self._connection.execute(
                "UPDATE runs SET finished_at = ?, summary = ? WHERE id = ?",
                (utc_now_text(), json.dumps(summary, sort_keys=True), run_id),
            )

    def order_record(
        self,
        *,
        run_id: int,
        issuer_id: str,
        card_id: str,
        operation_id: str,
        operation: str,
        silent: bool,
    ) -> None:
        """The issuer placed an order (before D1 says anything about it)."""
        with self._lock, self._transaction():
            self._connection.execute(
                "INSERT INTO orders (issuer_id, card_id, operation_id, operation, run_id,"
                " created_at, silent) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET run_id = excluded.run_id, silent = excluded.silent",
                (issuer_id, card_id, operation_id, operation, run_id, utc_now_text(), int(silent)),
            )

    def order_registered(
        self, *, issuer_id: str, card_id: str, operation_id: str, outcome: str, registered: bool
    ) -> None:
        """What the portal answered to the order's registration (`registered` on 200/201)."""
        with self._lock, self._transaction():
            self._connection.execute(
                "UPDATE orders SET registration = ?, registered_at = ?"
                " WHERE issuer_id = ? AND card_id = ? AND operation_id = ?",
                (
                    outcome,
                    utc_now_text() if registered else None,
                    issuer_id,
                    card_id,
                    operation_id,
                ),
            )

    def items_record(self, *, run_id: int, happenings: Iterable[tuple]) -> None:
        """Store items that just happened, in the order they happened.

        Each happening is (key, item, dropped) or (key, item, dropped, at) where `at` is the
        moment on the sandbox's clock (now when absent). A re-run overwrites its items.
        """
        now = utc_now_text()
        with self._lock, self._transaction():
            row = self._connection.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()
            seq = int(row[0])
            for happening in happenings:
                key, item, dropped = happening[:3]
                at = happening[3] if len(happening) > 3 and happening[3] is not None else None
                happened_at = at.isoformat(timespec="milliseconds") if at is not None else now
                seq += 1
                if key.step == 0:
                    self._connection.execute(
                        "INSERT INTO orders (issuer_id, card_id, operation_id, operation, run_id,"
                        " created_at) VALUES (?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT DO UPDATE SET run_id = excluded.run_id",
                        (
                            key.issuer_id,
                            key.card_id,
                            key.operation_id,
                            item.get("operation", ""),
                            run_id,
                            now,
                        ),
                    )
                details = item.get("details")
                self._connection.execute(
                    "INSERT INTO items (issuer_id, card_id, operation_id, step, details_status,"
                    " item, happened_at, dropped, seq, operation)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET item = excluded.item,"
                    " details_status = excluded.details_status, dropped = excluded.dropped,"
                    " happened_at = excluded.happened_at, seq = excluded.seq,"
                    " operation = excluded.operation",
                    (
                        key.issuer_id,
                        key.card_id,
                        key.operation_id,
                        key.step,
                        details.get("status") if isinstance(details, dict) else None,
                        json.dumps(item, separators=(",", ":")),
                        happened_at,
                        int(dropped),
                        seq,
                        item.get("operation", ""),
                    ),
                )

    def items_mark_delivered(self, *, keys: Iterable[ItemKey]) -> None:
        """Note that the portal answered 2xx to a POST carrying these items."""
        now = utc_now_text()
        with self._lock, self._transaction():
            self._connection.executemany(
                "UPDATE items SET delivered_count = delivered_count + 1,"
                " delivered_at = COALESCE(delivered_at, ?)"
                " WHERE issuer_id = ? AND card_id = ? AND operation_id = ? AND step = ?",
                [(now, k.issuer_id, k.card_id, k.operation_id, k.step) for k in keys],
            )

    # ------------------------------------------------------------------ reads (serve, verify)
    def production_status(self, *, issuer_id: str, card_id: str) -> dict[str, Any] | None:
        """What D1's productionStatus answers for a card: the latest status of its newest order.

        D1 answers per card, so a card ordered twice answers with the newer operation. The item
        is the operation's latest, as generated (whether or not it was delivered); when that
        item carried no `details` (a result sent incomplete), D1 still knows the step the order
        is at, so the answer carries the last step's `details`.
        """
        with self._lock:
            rows = self._connection.execute(
                "SELECT operation_id, item, seq FROM items"
                " WHERE issuer_id = ? AND card_id = ?"
                " AND (operation IN (?, ?) OR operation IS NULL)"
                " ORDER BY COALESCE(seq, 0), step",
                (issuer_id, card_id, *ORDER_OPERATIONS),
            ).fetchall()
        if not rows:
            return None
        first_seq: dict[str, int] = {}
        for operation_id, _, seq in rows:
            first_seq.setdefault(operation_id, seq or 0)
        newest = max(first_seq, key=lambda operation_id: first_seq[operation_id])
        items = [json.loads(item) for operation_id, item, _ in rows if operation_id == newest]
        answer = dict(items[-1])
        if not isinstance(answer.get("details"), dict):
            known = [item for item in items if isinstance(item.get("details"), dict)]
            if known:
                answer["details"] = known[-1]["details"]
        return answer

    def issuers(self) -> list[str]:
        with self._lock:
            rows = self._connection.execute("SELECT DISTINCT issuer_id FROM orders").fetchall()
        return sorted(row[0] for row in rows)

    def orders(self, *, issuer_ids: list[str], run_id: int | None = None) -> Iterator[TruthOrder]:
        """Every order of these issuers (optionally of one run) with its items in step order."""
        for issuer_id in issuer_ids:
            with self._lock:
                order_rows = self._connection.execute(
                    "SELECT card_id, operation_id, operation, run_id, registered_at,"
                    " registration, silent FROM orders"
                    " WHERE issuer_id = ? AND (? IS NULL OR run_id = ?) ORDER BY card_id",
                    (issuer_id, run_id, run_id),
                ).fetchall()
                item_rows = self._connection.execute(
                    "SELECT card_id, operation_id, step, item, dropped, delivered_count,"
                    " COALESCE(seq, step), happened_at FROM items"
                    " WHERE issuer_id = ? ORDER BY card_id, operation_id, COALESCE(seq, step)",
                    (issuer_id,),
                ).fetchall()
            items_by_order: dict[tuple[str, str], list[TruthItem]] = {}
            for (
                card_id,
                operation_id,
                step,
                item_json,
                dropped,
                delivered_count,
                seq,
                happened_at,
            ) in item_rows:
                items_by_order.setdefault((card_id, operation_id), []).append(
                    TruthItem(
                        key=ItemKey(issuer_id, card_id, operation_id, step),
                        item=json.loads(item_json),
                        dropped=bool(dropped),
                        delivered_count=int(delivered_count),
                        seq=int(seq),
                        happened_at=happened_at,
                    )
                )
            for (
                card_id,
                operation_id,
                operation,
                order_run_id,
                registered_at,
                registration,
                silent,
            ) in order_rows:
                yield TruthOrder(
                    issuer_id=issuer_id,
                    card_id=card_id,
                    operation_id=operation_id,
                    operation=operation,
                    run_id=int(order_run_id),
                    items=items_by_order.get((card_id, operation_id), []),
                    registered=registered_at is not None,
                    registration=registration,
                    silent=bool(silent),
                )

    def run_lookup(self, *, seed: int, run_number: int) -> int | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT MAX(id) FROM runs WHERE seed = ? AND run_number = ?", (seed, run_number)
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._connection)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so a writer takes the lock up front instead of failing late."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self._connection.execute("COMMIT")
        else:
            self._connection.execute("ROLLBACK")
