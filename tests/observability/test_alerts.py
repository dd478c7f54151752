"""The alerts operators see on the dashboard and in /metrics, each from the situation behind it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.fixtures import spec_examples as spec
from tests.observability.conftest import value
from tracking.models import CardOrder, NotificationDelivery, OperationEvent
from tracking.observability.alerts import alerts_current
from tracking.observability.state import sweep_success_record

pytestmark = pytest.mark.django_db

# A Wednesday, in UTC (ALERT_TIME_ZONE defaults to TIME_ZONE, which is UTC here).
WEDNESDAY = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)


def kinds(alerts) -> set[tuple[str, str]]:
    return {(a.kind, a.subject) for a in alerts}


def delivered(issuer, at: dt.datetime, *, status: int = 204, error_code: str = ""):
    return NotificationDelivery.objects.create(
        issuer=issuer,
        issuer_id_in_path=issuer.issuer_id,
        received_at=at,
        status_code=status,
        error_code=error_code,
    )


@pytest.fixture(autouse=True)
def _quiet_defaults(settings):
    settings.ALERT_SWEEP_LATE = 0  # each test switches on only what it looks at


def test_silent_issuer_raises_an_alert_after_the_configured_time(issuer, settings):
    settings.ALERT_SILENCE_AFTER = 3600
    delivered(issuer, WEDNESDAY.replace(hour=8))

    assert ("inbound_silence", issuer.issuer_id) not in kinds(
        alerts_current(now=WEDNESDAY.replace(hour=8, minute=50))
    )
    alerts = alerts_current(now=WEDNESDAY.replace(hour=9, minute=30))
    silence = next(a for a in alerts if a.kind == "inbound_silence")
    assert silence.subject == issuer.issuer_id
    assert "90 min" in silence.message


def test_silence_counts_only_inside_the_expected_hours(issuer, settings):
    settings.ALERT_SILENCE_AFTER = 3600
    settings.ALERT_SILENCE_HOURS = "09:00-17:00"
    settings.ALERT_SILENCE_WEEKDAYS = "mon-fri"
    delivered(issuer, (WEDNESDAY - dt.timedelta(days=1)).replace(hour=16))

    def silent_at(moment):
        return ("inbound_silence", issuer.issuer_id) in kinds(alerts_current(now=moment))

    assert not silent_at(WEDNESDAY.replace(hour=7))  # night: nobody expects traffic
    assert not silent_at(WEDNESDAY.replace(hour=9, minute=30))  # 30 min into the day
    assert silent_at(WEDNESDAY.replace(hour=10, minute=30))
    saturday = WEDNESDAY + dt.timedelta(days=3)
    assert not silent_at(saturday.replace(hour=11))


def test_per_issuer_override_of_the_silence_rule(issuer, settings):
    settings.ALERT_SILENCE_AFTER = 3600
    settings.ALERT_SILENCE_OVERRIDES = {issuer.issuer_id: {"after": 6 * 3600}}
    delivered(issuer, WEDNESDAY.replace(hour=8))

    assert not alerts_current(now=WEDNESDAY.replace(hour=12))
    assert alerts_current(now=WEDNESDAY.replace(hour=15))


def test_rising_share_of_refused_deliveries(issuer, settings):
    settings.ALERT_REFUSED_SHARE = 0.1
    settings.ALERT_REFUSED_MIN_DELIVERIES = 20
    now = WEDNESDAY.replace(hour=12)
    for minute in range(30):
        refused = minute % 3 == 0
        delivered(
            issuer,
            now - dt.timedelta(minutes=minute + 1),
            status=400 if refused else 204,
            error_code="PARSING_ERROR" if refused else "",
        )

    alert = next(a for a in alerts_current(now=now) if a.kind == "refused_share")
    assert alert.severity == "critical"
    assert "33%" in alert.message and "PARSING_ERROR 10" in alert.message


def test_a_steady_share_of_refusals_is_not_rising(issuer, settings):
    settings.ALERT_REFUSED_SHARE = 0.1
    settings.ALERT_REFUSED_MIN_DELIVERIES = 10
    now = WEDNESDAY.replace(hour=12)
    for minute in range(120):
        delivered(issuer, now - dt.timedelta(minutes=minute + 1), status=400 if minute % 4 else 204)

    assert "refused_share" not in {a.kind for a in alerts_current(now=now)}


def test_stuck_orders_and_failing_reconciliation(issuer, post_notification, settings):
    settings.RECONCILE_STAGE_THRESHOLDS = {"CARD_PROD_REQUESTED": 3600}
    settings.ALERT_RECONCILE_ATTEMPTS = 3
    assert post_notification(spec.E1).status_code == 204
    assert post_notification(spec.E12).status_code == 204
    now = timezone.now()
    CardOrder.objects.filter(production_status="CARD_PROD_REQUESTED").update(
        stage_entered_at=now - dt.timedelta(hours=2)
    )
    CardOrder.objects.filter(card_id=spec.E12["operations"][0]["cardId"]).update(
        needs_reconcile=True, reconcile_attempts=4
    )

    alerts = alerts_current(now=now)

    assert ("orders_stuck", "CARD_PROD_REQUESTED") in kinds(alerts)
    stuck = next(a for a in alerts if a.kind == "orders_stuck")
    # In staff's words: the stage's label first, D1's code after, the limit as a duration.
    assert stuck.title == "Orders stuck in a stage"
    assert "in Requested (CARD_PROD_REQUESTED) for more than 60 min" in stuck.message
    assert "RECONCILE_STAGE_THRESHOLDS" not in stuck.message
    failing = next(a for a in alerts if a.kind == "reconcile_failing")
    assert failing.value == 1
    assert "still to be checked with D1 after 3 or more tries" in failing.message


def test_late_sweep_alert_clears_once_a_sweep_succeeds(issuer, post_notification, settings):
    from django.core.cache import cache

    from tracking.observability.state import SWEEP_LAST_SUCCESS_KEY

    cache.delete(SWEEP_LAST_SUCCESS_KEY)  # the cache may be shared with earlier runs
    settings.ALERT_SWEEP_LATE = 600
    assert post_notification(spec.E1).status_code == 204

    assert ("sweep_late", "reconcile") in kinds(alerts_current())
    sweep_success_record()
    assert ("sweep_late", "reconcile") not in kinds(alerts_current())


def test_alerts_are_exported_as_metrics(issuer, settings, scrape):
    settings.ALERT_SILENCE_AFTER = 60
    delivered(issuer, timezone.now() - dt.timedelta(minutes=5))

    text = scrape()

    assert (
        value(
            text,
            "portal_alert_active",
            kind="inbound_silence",
            subject=issuer.issuer_id,
            severity="warning",
        )
        == 1
    )


def test_alerts_command_prints_them_and_fails_on_a_critical_one(issuer, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("alerts", stdout=out)
    assert out.getvalue().strip() == "no active alert"

    settings.READINESS_MAX_UNAPPLIED_AGE = 60
    OperationEvent.objects.create(
        issuer=issuer,
        fingerprint="f" * 64,
        payload={},
        first_received_at=timezone.now() - dt.timedelta(minutes=10),
    )
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("alerts", stdout=out)
    assert raised.value.returncode == 2
    # The code for scripts, then what it means for the person reading the output.
    assert "unapplied_items" in out.getvalue()
    assert "Messages not applied: 1 received item(s) not yet applied" in out.getvalue()
