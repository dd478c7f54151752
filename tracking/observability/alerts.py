"""The alerts operators see: on the admin dashboard and as `portal_alert_active` on /metrics.

`alerts_current()` reads the operational state and returns what needs a human now:

- `inbound_silence`: no POST from an active issuer for ALERT_SILENCE_AFTER seconds, counted only
  inside the hours and weekdays when that issuer is expected to send (ALERT_SILENCE_HOURS,
  ALERT_SILENCE_WEEKDAYS, ALERT_TIME_ZONE; per issuer in ALERT_SILENCE_OVERRIDES); or registered
  orders of the issuer that D1 has said nothing about beyond REGISTERED_SILENT_AFTER (counted);
- `refused_share`: the share of refused POSTs (4xx and 5xx) in the last ALERT_REFUSED_WINDOW
  seconds reached ALERT_REFUSED_SHARE and is higher than in the window before, with at least
  ALERT_REFUSED_MIN_DELIVERIES POSTs in the window;
- `orders_stuck`: orders in a non-terminal stage longer than its threshold (one alert per stage),
  critical from ALERT_STUCK_CRITICAL orders on;
- `reconcile_failing`: orders still needing reconciliation after ALERT_RECONCILE_ATTEMPTS attempts;
- `sweep_late`: no successful reconcile sweep for ALERT_SWEEP_LATE seconds;
- `unapplied_items`: a stored item not applied for READINESS_MAX_UNAPPLIED_AGE seconds;
- `event_endpoint_disabled`: an issuer's event endpoint disabled after failing for longer than
  EVENT_ENDPOINT_DISABLE_AFTER (tracking.outbound.delivery).

Nothing is written: the function is a pure read, safe to call on every page view and scrape.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.utils.functional import lazy
from django.utils.translation import gettext, gettext_noop

from tracking.domain import labels
from tracking.observability.state import OperationsState, operations_state

WARNING = "warning"
CRITICAL = "critical"
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Alert:
    """One active alert: what, about whom, how bad, a sentence for operators, and the figures."""

    kind: str
    subject: str
    severity: str
    message: str  # in staff's words; a code, when one helps, in parentheses
    value: float
    threshold: float
    since: dt.datetime | None = None
    # inbound_silence: the issuer's silent orders (registered, nothing from D1 yet).
    silent_orders: int = 0

    @property
    def title(self) -> str:
        """What the alert is about in a few words ("Orders stuck in a stage")."""
        return labels.label_text("alert", self.kind)

    @property
    def explanation(self) -> str:
        return labels.label("alert", self.kind).help


def alerts_current(
    *, now: dt.datetime | None = None, state: OperationsState | None = None
) -> list[Alert]:
    """The alerts active at `now`, most severe first. Reads the database; writes nothing."""
    state = state or operations_state(now=now)
    alerts = [
        *_inbound_silence(state),
        *_refused_share(state),
        *_orders_stuck(state),
        *_reconcile_failing(state),
        *_sweep_late(state),
        *_unapplied(state),
        *_event_endpoints_disabled(state),
    ]
    return sorted(alerts, key=lambda a: (a.severity != CRITICAL, a.kind, a.subject))


# ---------------------------------------------------------------------------- inbound silence


@dataclass(frozen=True)
class SilenceRule:
    after: dt.timedelta
    start: dt.time
    end: dt.time  # exclusive; 24:00 is written as 00:00 with start 00:00 meaning all day
    weekdays: frozenset[int]
    tz: zoneinfo.ZoneInfo


def silence_rule(issuer_id: str) -> SilenceRule:
    """The silence rule of `issuer_id`: the global settings overlaid with its overrides."""
    values = {
        "after": settings.ALERT_SILENCE_AFTER,
        "hours": settings.ALERT_SILENCE_HOURS,
        "weekdays": settings.ALERT_SILENCE_WEEKDAYS,
        **settings.ALERT_SILENCE_OVERRIDES.get(issuer_id, {}),
    }
    start, end = _hours(values["hours"])
    return SilenceRule(
        after=dt.timedelta(seconds=int(values["after"])),
        start=start,
        end=end,
        weekdays=_weekdays(values["weekdays"]),
        tz=zoneinfo.ZoneInfo(settings.ALERT_TIME_ZONE),
    )


def _hours(text: str) -> tuple[dt.time, dt.time]:
    start_text, end_text = (part.strip() for part in text.split("-", 1))
    start = dt.time.fromisoformat(start_text)
    end = dt.time(0, 0) if end_text in ("24:00", "24") else dt.time.fromisoformat(end_text)
    return start, end


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if "-" in part:
            first, last = (_WEEKDAYS.index(p[:3]) for p in part.split("-", 1))
            days.update(
                range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)]
            )
        elif part:
            days.add(_WEEKDAYS.index(part[:3]))
    return frozenset(days)


def _window_start(rule: SilenceRule, now: dt.datetime) -> dt.datetime | None:
    """When the expected-traffic window containing `now` opened, or None outside any window."""
    local = now.astimezone(rule.tz)
    all_day = rule.start == rule.end
    for days_back in (0, 1):
        day = local.date() - dt.timedelta(days=days_back)
        if day.weekday() not in rule.weekdays:
            continue
        opens = dt.datetime.combine(day, rule.start, tzinfo=rule.tz)
        if all_day:
            closes = opens + dt.timedelta(days=1)
        else:
            closes = dt.datetime.combine(day, rule.end, tzinfo=rule.tz)
            if closes <= opens:  # a window that runs past midnight
                closes += dt.timedelta(days=1)
        if opens <= local < closes:
            # An all-day window on consecutive days never really closes.
            if all_day:
                while (opens - dt.timedelta(days=1)).weekday() in rule.weekdays and (
                    local - opens
                ) < dt.timedelta(days=8):
                    opens -= dt.timedelta(days=1)
            return opens
    return None


def _inbound_silence(state: OperationsState) -> list[Alert]:
    alerts = []
    issuers = sorted(set(state.issuer_silence) | set(state.silent_orders_by_issuer))
    for issuer_id in issuers:
        silent_orders = state.silent_orders_by_issuer.get(issuer_id, 0)
        silence = state.issuer_silence.get(issuer_id, 0.0)
        rule = silence_rule(issuer_id)
        opened = _window_start(rule, state.now)
        last = state.issuer_last_notification.get(issuer_id)
        quiet = 0.0
        if opened is not None and issuer_id in state.issuer_silence:
            since = state.now - dt.timedelta(seconds=silence)
            # Silence counts only from when traffic was expected again.
            quiet = (state.now - max(since, opened)).total_seconds()
        inbound_silent = opened is not None and quiet >= rule.after.total_seconds()
        if not inbound_silent and not silent_orders:
            continue
        parts = []
        if inbound_silent:
            parts.append(
                words(
                    gettext_noop("No message from D1 for issuer %(issuer)s for %(duration)s")
                    if last
                    else gettext_noop(
                        "No message from D1 for issuer %(issuer)s for %(duration)s (none "
                        "received yet)"
                    ),
                    {"issuer": issuer_id, "duration": _duration(silence)},
                )
            )
        if silent_orders:
            waited = _duration(_seconds(settings.REGISTERED_SILENT_AFTER))
            parts.append(
                words(
                    gettext_noop(
                        "%(count)s registered order(s) of issuer %(issuer)s that D1 has said "
                        "nothing about for more than %(duration)s"
                    ),
                    {"count": silent_orders, "issuer": issuer_id, "duration": waited},
                )
            )
        alerts.append(
            Alert(
                kind="inbound_silence",
                subject=issuer_id,
                severity=WARNING,
                message=words(gettext_noop("%(parts)s."), {"parts": joined(parts)}),
                value=silence if inbound_silent else 0,
                threshold=rule.after.total_seconds(),
                since=last,
                silent_orders=silent_orders,
            )
        )
    return alerts


# ---------------------------------------------------------------------------- refused deliveries


def _refused_share(state: OperationsState) -> list[Alert]:
    total = state.deliveries_in_window
    if total < settings.ALERT_REFUSED_MIN_DELIVERIES or not total:
        return []
    share = state.refused_in_window / total
    previous_total = state.deliveries_in_previous_window
    previous = state.refused_in_previous_window / previous_total if previous_total else 0.0
    if share < settings.ALERT_REFUSED_SHARE or share <= previous:
        return []
    reasons = ", ".join(
        f"{code or '-'} {count}"
        for code, count in sorted(state.refused_by_reason.items(), key=lambda kv: -kv[1])[:5]
    )
    return [
        Alert(
            kind="refused_share",
            subject="webhook",
            severity=CRITICAL if share >= 2 * settings.ALERT_REFUSED_SHARE else WARNING,
            message=words(
                gettext_noop(
                    "%(share)s of the calls from D1 were refused in the last %(duration)s (before: "
                    "%(previous)s). Reason codes: %(reasons)s."
                ),
                {
                    "share": f"{share:.0%}",
                    "duration": _duration(settings.ALERT_REFUSED_WINDOW),
                    "previous": f"{previous:.0%}",
                    "reasons": reasons,
                },
            ),
            value=share,
            threshold=settings.ALERT_REFUSED_SHARE,
        )
    ]


# ---------------------------------------------------------------------------- orders and sweeps


def _orders_stuck(state: OperationsState) -> list[Alert]:
    from tracking.domain.stage_limits import stage_threshold

    alerts = []
    for stage, count in sorted(state.stuck_by_stage.items()):
        if count < settings.ALERT_STUCK_MIN_ORDERS:
            continue
        alerts.append(
            Alert(
                kind="orders_stuck",
                subject=stage or "none",
                severity=CRITICAL if count >= settings.ALERT_STUCK_CRITICAL else WARNING,
                message=words(
                    gettext_noop(
                        "%(orders)s %(stage)s for more than %(duration)s, the time limit of that "
                        "stage."
                    ),
                    {
                        "orders": _orders(count),
                        "stage": _stage_words(stage),
                        "duration": _duration(stage_threshold(stage).total_seconds()),
                    },
                ),
                value=count,
                threshold=settings.ALERT_STUCK_MIN_ORDERS,
            )
        )
    return alerts


def _event_endpoints_disabled(state: OperationsState) -> list[Alert]:
    """An issuer's event endpoint the portal disabled after its deliveries failed too long."""
    return [
        Alert(
            kind="event_endpoint_disabled",
            subject=issuer_id,
            severity=WARNING,
            message=(
                f"Events to {url} are no longer sent ({reason}); "
                "fix the receiver, enable the endpoint again and replay since it failed."
            ),
            value=1,
            threshold=settings.EVENT_ENDPOINT_DISABLE_AFTER.total_seconds(),
            since=disabled_at,
        )
        for issuer_id, url, disabled_at, reason in state.disabled_event_endpoints
    ]


def _reconcile_failing(state: OperationsState) -> list[Alert]:
    count = state.reconcile_failing_orders
    if not count:
        return []
    return [
        Alert(
            kind="reconcile_failing",
            subject="reconcile",
            severity=CRITICAL if count >= settings.ALERT_STUCK_CRITICAL else WARNING,
            message=words(
                gettext_noop(
                    "%(orders)s still to be checked with D1 after %(tries)s or more tries."
                ),
                {"orders": _orders(count), "tries": settings.ALERT_RECONCILE_ATTEMPTS},
            ),
            value=count,
            threshold=settings.ALERT_RECONCILE_ATTEMPTS,
        )
    ]


def _sweep_late(state: OperationsState) -> list[Alert]:
    late_after = settings.ALERT_SWEEP_LATE
    if not late_after:
        return []
    age = state.sweep_age
    if age is not None and age < late_after:
        return []
    if age is None and not state.orders_by_stage:
        return []  # a fresh install with nothing to sweep yet
    return [
        Alert(
            kind="sweep_late",
            subject="reconcile",
            severity=WARNING,
            message=(
                words(gettext_noop("The automatic check with D1 has not succeeded yet."))
                if age is None
                else words(
                    gettext_noop("The automatic check with D1 last succeeded %(duration)s ago."),
                    {"duration": _duration(age)},
                )
            ),
            value=age if age is not None else -1,
            threshold=late_after,
            since=state.sweep_last_success,
        )
    ]


def _unapplied(state: OperationsState) -> list[Alert]:
    age = state.unapplied_oldest_age
    if age is None or age <= settings.READINESS_MAX_UNAPPLIED_AGE:
        return []
    return [
        Alert(
            kind="unapplied_items",
            subject="ingest",
            severity=CRITICAL,
            message=words(
                gettext_noop(
                    "%(count)s received item(s) not yet applied to their orders; the oldest has "
                    "waited %(duration)s."
                ),
                {"count": state.unapplied_count, "duration": _duration(age)},
            ),
            value=age,
            threshold=settings.READINESS_MAX_UNAPPLIED_AGE,
        )
    ]


def _orders(count: int) -> str:
    return (
        words(gettext_noop("1 order"))
        if count == 1
        else words(gettext_noop("%(count)s orders"), {"count": count})
    )


def _stage_words(stage: str) -> str:
    """ "in Being personalised (CARD_PROD_ONGOING)": the label first, D1's code after."""
    if not stage:
        return words(gettext_noop("without a known stage"))
    found = labels.label("production_status", stage)
    if not found.known:
        return words(gettext_noop("in an unknown stage (%(code)s)"), {"code": stage})
    return words(gettext_noop("in %(stage)s (%(code)s)"), {"stage": found.text, "code": stage})


def _seconds(value) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return words(gettext_noop("%(n)s s"), {"n": seconds})
    if seconds < 2 * 3600:
        return words(gettext_noop("%(n)s min"), {"n": seconds // 60})
    if seconds < 2 * 86400:
        return words(gettext_noop("%(n)s h"), {"n": seconds // 3600})
    return words(gettext_noop("%(n)s days"), {"n": seconds // 86400})


def _words(template: str, params: dict | None = None) -> str:
    # Called when the alert is shown, so that each reader sees their language; module-level so
    # that the lazy message survives the dashboard's shared cache (pickle).
    text = gettext(template)
    return text % params if params else text


def _joined(parts: list) -> str:
    return "; ".join(str(part) for part in parts)


# An alert's message in the reader's language (the dashboard; `manage.py alerts` in the site's).
words = lazy(_words, str)
joined = lazy(_joined, str)
