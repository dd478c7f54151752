#!/usr/bin/env python
"""Backtest of the predicted ship date: mean absolute error in days, on a known history.

At each cutoff (noon of every day of the test period) the predictor sees only what the portal
would have seen then: orders shipped in the previous INSIGHT_PREDICTION_WINDOW_DAYS, and, for
each order still open, its current stage and when it entered it. Its p50 date is compared with
the day the order really shipped; the p90 date with how often shipment came no later.

Histories:
- `--synthetic` (default): orders over 60 days, three sites with their own delay per stage
  (log-normal; one site slow in personalisation, one in data preparation), two issuers, a
  seeded random generator. Compared with two baselines: the same method without sites
  (all sites pooled) and D1's own dueDate (5 days after the request).
- `--database`: the stage spans of the portal's database (`StageSpan`, after
  `manage.py insight_refresh --full`), e.g. after a run against the D1 sandbox.

    .venv/bin/python bench/prediction_backtest.py --synthetic --write docs/predictions.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = (
    "CARD_PROD_REQUESTED",
    "DATA_PREPARED",
    "CARD_PROD_READY",
    "CARD_PROD_ONGOING",
    "CARD_PROD_DONE",
)
# Median hours per stage at each site; the spread is log-normal with sigma SIGMA.
SITES = {
    "PERSO-SITE-EU-01": (1, 4, 10, 12, 8),
    "PERSO-SITE-EU-02": (1, 4, 10, 60, 8),
    "PERSO-SITE-US-01": (1, 30, 10, 12, 8),
}
ISSUER_FACTOR = {"BANK-A": 1.0, "BANK-B": 1.3}  # BANK-B's cards take longer everywhere
SIGMA = 0.5
DUE_AFTER = dt.timedelta(days=5)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Order:
    issuer: str
    site: str
    entered: dict[str, dt.datetime]  # stage -> entry time
    shipped_at: dt.datetime
    due: dt.date


def synthetic_orders(*, days: int, per_day: int, seed: int) -> list[Order]:
    rng = random.Random(seed)
    orders = []
    for day in range(days):
        for _ in range(per_day):
            issuer = rng.choice(list(ISSUER_FACTOR))
            site = rng.choice(list(SITES))
            when = START + dt.timedelta(days=day, seconds=rng.uniform(0, 86400))
            requested = when
            entered = {}
            for stage, median in zip(STAGES, SITES[site], strict=True):
                entered[stage] = when
                hours = median * ISSUER_FACTOR[issuer] * rng.lognormvariate(0, SIGMA)
                when += dt.timedelta(hours=hours)
            orders.append(Order(issuer, site, entered, when, (requested + DUE_AFTER).date()))
    return orders


def database_orders() -> list[Order]:
    """Shipped orders as the portal recorded them (stage entry times from StageSpan)."""
    from collections import defaultdict

    from tracking.models import StageSpan

    spans = defaultdict(dict)
    facts = {}
    rows = StageSpan.objects.filter(shipped_at__isnull=False).values_list(
        "order_id", "issuer_id", "production_site", "stage", "entered_at", "shipped_at"
    )
    for order_id, issuer, site, stage, entered, shipped in rows.iterator(chunk_size=5000):
        if stage in STAGES:
            spans[order_id][stage] = entered
            facts[order_id] = (issuer, site, shipped)
    return [
        Order(issuer, site, spans[pk], shipped, (min(spans[pk].values()) + DUE_AFTER).date())
        for pk, (issuer, site, shipped) in facts.items()
    ]


def samples_until(orders: list[Order], cutoff: dt.datetime, window: dt.timedelta):
    for order in orders:
        if cutoff - window <= order.shipped_at <= cutoff:
            for stage, entered in order.entered.items():
                yield order.issuer, order.site, stage, (order.shipped_at - entered).total_seconds()


def stage_at(order: Order, cutoff: dt.datetime) -> tuple[str, dt.datetime] | None:
    """The order's stage at `cutoff` (None before it began or once it shipped)."""
    if order.shipped_at <= cutoff:
        return None
    current = None
    for stage in STAGES:
        entered = order.entered.get(stage)
        if entered is not None and entered <= cutoff:
            current = (stage, entered)
    return current


@dataclass
class Score:
    name: str
    errors: list[float]
    within_p90: list[bool]

    @property
    def mae(self) -> float:
        return statistics.fmean(self.errors) if self.errors else float("nan")


def backtest(orders: list[Order], *, test_days: int, window_days: int, min_count: int):
    from tracking.insight.predictions import History, predict

    window = dt.timedelta(days=window_days)
    last = max(o.shipped_at for o in orders)
    first_cutoff = (last - dt.timedelta(days=test_days + 7)).replace(hour=12, minute=0, second=0)
    scores = {
        name: Score(name, [], [])
        for name in ("site and issuer (the portal's method)", "all sites pooled", "D1's dueDate")
    }
    for day in range(test_days):
        cutoff = first_cutoff + dt.timedelta(days=day)
        samples = list(samples_until(orders, cutoff, window))
        with_sites = History.from_samples(samples, min_count=min_count)
        pooled = History.from_samples(
            [("", "", stage, seconds) for _, _, stage, seconds in samples], min_count=min_count
        )
        for order in orders:
            found = stage_at(order, cutoff)
            if found is None:
                continue
            stage, entered = found
            actual = order.shipped_at.date()
            for name, history, issuer, site in (
                ("site and issuer (the portal's method)", with_sites, order.issuer, order.site),
                ("all sites pooled", pooled, "", ""),
            ):
                guess = predict(
                    history=history,
                    issuer_id=issuer,
                    site=site,
                    stage=stage,
                    entered_at=entered,
                    now=cutoff,
                )
                if guess is None:
                    continue
                scores[name].errors.append(abs((guess.p50 - actual).days))
                scores[name].within_p90.append(actual <= guess.p90)
            scores["D1's dueDate"].errors.append(abs((order.due - actual).days))
            scores["D1's dueDate"].within_p90.append(actual <= order.due)
    return list(scores.values())


def report(title: str, orders: list[Order], scores: list[Score], args) -> str:
    lines = [
        f"### {title}",
        "",
        f"{len(orders):,} orders; {args.test_days} daily cutoffs; history window "
        f"{args.window_days} days; at least {args.min_count} orders per figure.",
        "",
        "| predictor | predictions | mean absolute error (days) | shipped by the p90 date |",
        "|---|---|---|---|",
    ]
    for score in scores:
        share = statistics.fmean(score.within_p90) if score.within_p90 else float("nan")
        lines.append(f"| {score.name} | {len(score.errors):,} | {score.mae:.2f} | {share:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--synthetic", action="store_true", default=True)
    source.add_argument("--database", action="store_true")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=150)
    parser.add_argument("--test-days", type=int, default=20)
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--min-count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--write", type=Path, help="print into this Markdown file's backtest section"
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("CACHE_URL", "locmemcache://")
    import django

    django.setup()
    if args.database:
        orders, title = database_orders(), "The portal database's history"
    else:
        orders = synthetic_orders(days=args.days, per_day=args.per_day, seed=args.seed)
        title = "Synthetic history with site-specific delays"
    if not orders:
        sys.exit("no shipped orders to learn from")
    scores = backtest(
        orders, test_days=args.test_days, window_days=args.window_days, min_count=args.min_count
    )
    section = report(title, orders, scores, args)
    print(section)
    if args.write:
        marker = f"### {title}"
        text = args.write.read_text()
        if marker in text:
            start = text.index(marker)
            end = text.find("\n### ", start + 1)
            text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        args.write.write_text(text)


if __name__ == "__main__":
    main()
