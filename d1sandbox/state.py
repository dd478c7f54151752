"""The sandbox's truth: every order and item `feed` generated, shared with `serve` and `verify`.

One SQLite file in WAL mode, because the three commands run as separate processes:

- `runs`: one row per feed run (seed, run number, flags, summary when it ends);
- `orders`: one row per simulated card order, keyed by (issuer_id, card_id, operation_id);
- `items`: every notification item of an order in lifecycle order (`step`), the JSON exactly
  as D1 would send it, whether the planner dropped it, and when and how often the portal
  acknowledged it with a 2xx.
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
    PRIMARY KEY (issuer_id, card_id, operation_id, step)
);
CREATE INDEX IF NOT EXISTS items_by_card ON items (issuer_id, card_id);
"""


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


@dataclass(frozen=True)
class TruthOrder:
    """One simulated order with all its items in lifecycle order."""

    issuer_id: str
    card_id: str
    operation_id: str
    operation: str
    run_id: int
    items: list[TruthItem]

    @property
    def delivered(self) -> bool:
        return any(item.delivered_count > 0 for item in self.items)


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

    def items_record(
        self, *, run_id: int, happenings: Iterable[tuple[ItemKey, dict, bool]]
    ) -> None:
        """Store items that just happened: (key, item, dropped); a re-run overwrites its items."""
        now = utc_now_text()
        with self._lock, self._transaction():
            for key, item, dropped in happenings:
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
                self._connection.execute(
                    "INSERT INTO items (issuer_id, card_id, operation_id, step, details_status,"
                    " item, happened_at, dropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET item = excluded.item,"
                    " details_status = excluded.details_status, dropped = excluded.dropped",
                    (
                        key.issuer_id,
                        key.card_id,
                        key.operation_id,
                        key.step,
                        (item.get("details") or {}).get("status"),
                        json.dumps(item, separators=(",", ":")),
                        now,
                        int(dropped),
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
    def latest_item(self, *, issuer_id: str, card_id: str) -> dict[str, Any] | None:
        """The latest item generated for a card, as D1's productionStatus returns it."""
        with self._lock:
            row = self._connection.execute(
                "SELECT item FROM items WHERE issuer_id = ? AND card_id = ?"
                " ORDER BY happened_at DESC, step DESC LIMIT 1",
                (issuer_id, card_id),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def issuers(self) -> list[str]:
        with self._lock:
            rows = self._connection.execute("SELECT DISTINCT issuer_id FROM orders").fetchall()
        return sorted(row[0] for row in rows)

    def orders(self, *, issuer_ids: list[str], run_id: int | None = None) -> Iterator[TruthOrder]:
        """Every order of these issuers (optionally of one run) with its items in step order."""
        for issuer_id in issuer_ids:
            with self._lock:
                order_rows = self._connection.execute(
                    "SELECT card_id, operation_id, operation, run_id FROM orders"
                    " WHERE issuer_id = ? AND (? IS NULL OR run_id = ?) ORDER BY card_id",
                    (issuer_id, run_id, run_id),
                ).fetchall()
                item_rows = self._connection.execute(
                    "SELECT card_id, operation_id, step, item, dropped, delivered_count FROM items"
                    " WHERE issuer_id = ? ORDER BY card_id, operation_id, step",
                    (issuer_id,),
                ).fetchall()
            items_by_order: dict[tuple[str, str], list[TruthItem]] = {}
            for card_id, operation_id, step, item_json, dropped, delivered_count in item_rows:
                items_by_order.setdefault((card_id, operation_id), []).append(
                    TruthItem(
                        key=ItemKey(issuer_id, card_id, operation_id, step),
                        item=json.loads(item_json),
                        dropped=bool(dropped),
                        delivered_count=int(delivered_count),
                    )
                )
            for card_id, operation_id, operation, order_run_id in order_rows:
                yield TruthOrder(
                    issuer_id=issuer_id,
                    card_id=card_id,
                    operation_id=operation_id,
                    operation=operation,
                    run_id=int(order_run_id),
                    items=items_by_order.get((card_id, operation_id), []),
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
