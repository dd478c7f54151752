"""`manage.py rederive` on a database whose orders were derived with the old tie-break."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict
from django.test import Client

from tests.domain.test_time_order_cases import CASES
from tracking.domain.fold import RULES_VERSION
from tracking.domain.ordering import EventFacts
from tracking.domain.statuses import shipment_rank
from tracking.intake.ingest import rederive as ingest_rederive
from tracking.models import CardOrder, Issuer, OperationEvent

pytestmark = pytest.mark.django_db


def receipt_tie_break(self: EventFacts) -> tuple:
    """The rule before RULES_VERSION 2: rank, carrier rank, then the time the portal received it."""
    return (
        self.rank if self.rank is not None else -1,
        shipment_rank(self.shipment),
        self.first_received_at,
        self.fingerprint,
    )


@pytest.fixture
def old_database(issuer, post_notification, monkeypatch):
    """The six cases, posted in the order listed, folded with the old tie-break."""
    with monkeypatch.context() as old:
        old.setattr(EventFacts, "latest_key", receipt_tie_break)
        old.setattr(ingest_rederive, "RULES_VERSION", 1)
        for case in CASES.values():
            for item in case.items:
                assert post_notification({"operations": [item]}).status_code == 204
    return issuer


def snapshot() -> dict:
    orders = {o.pk: model_to_dict(o) for o in CardOrder.objects.all()}
    events = dict(OperationEvent.objects.values_list("pk", "outcome"))
    return {"orders": orders, "events": events}


def rederive(*args: str) -> str:
    out = io.StringIO()
    call_command("rederive", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_old_database_shows_the_arrival_bugs(old_database, order_state):
    failed = order_state("card-case-1")
    assert (failed["operation_status"], failed["error_code"]) == ("PENDING", "")
    assert order_state("card-case-2")["end_time"] is None
    assert all(o.rules_version == 1 for o in CardOrder.objects.all())


def test_dry_run_reports_the_orders_that_change_and_writes_nothing(old_database):
    before = snapshot()

    report = rederive("--dry-run")

    assert snapshot() == before
    assert "dry run, nothing written" in report
    assert "Orders whose state changes: " in report
    changed = int(report.split("Orders whose state changes: ")[1].split(";")[0])
    assert changed >= 2
    assert "operation_status:" in report
    assert "card-case-1 / op-card-case-1: 'PENDING' -> 'FAILED'" in report
    assert "error_code:" in report


def test_a_real_run_writes_once_and_a_second_run_changes_nothing(old_database, order_state):
    first = rederive()

    assert "(written)" in first
    failed = order_state("card-case-1")
    assert (failed["operation_status"], failed["error_code"]) == ("FAILED", "E_PERSO")
    assert order_state("card-case-2")["end_time"] == "2026-03-04T10:00:00Z"
    assert order_state("card-case-4")["shipment"]["status"] == "IN_TRANSIT"
    assert {o.rules_version for o in CardOrder.objects.all()} == {RULES_VERSION}
    after_first = snapshot()

    second = rederive()

    assert "Orders whose state changes: 0; only re-stamped: 0; events whose outcome changes: 0" in (
        second
    )
    assert snapshot() == after_first


def test_the_state_after_rederive_is_the_state_of_a_fresh_ingest(old_database, post_notification):
    rederive()
    fresh_issuer = Issuer.objects.create(issuer_id="ISSUERX002", name="Fresh Bank")
    for case in CASES.values():
        for item in case.items:
            post_notification({"operations": [item]}, issuer_id=fresh_issuer.issuer_id)

    for case in CASES.values():
        rederived = CardOrder.objects.get(issuer=old_database, card_id=case.card)
        fresh = CardOrder.objects.get(issuer=fresh_issuer, card_id=case.card)
        assert _content(rederived) == _content(fresh), case.card


# Columns that say when or for whom, not what the events say.
_NOT_CONTENT = {
    "id",
    "issuer",
    "created_at",
    "updated_at",
    "stage_first_seen",
    "stage_entered_at",
    "first_event_at",
    "last_event_at",
    "exception_changed_at",
}


def _content(order: CardOrder) -> dict:
    return {k: v for k, v in model_to_dict(order).items() if k not in _NOT_CONTENT}


def test_rederive_of_one_issuer_and_an_unknown_issuer(old_database):
    assert f"Re-derived {len(CASES)} orders" in rederive(
        "--issuer", old_database.issuer_id, "--dry-run"
    )
    with pytest.raises(CommandError, match="no issuer"):
        rederive("--issuer", "NOSUCHISS1")


def test_outdated_only_touches_the_orders_stamped_by_older_rules(old_database):
    CardOrder.objects.filter(card_id="card-case-1").update(rules_version=RULES_VERSION)

    report = rederive("--outdated", "--dry-run")

    assert f"Re-derived {len(CASES) - 1} orders" in report
    assert "card-case-1 /" not in report


def test_the_order_page_shows_which_rules_derived_the_state(old_database):
    user = get_user_model().objects.create_superuser("lead", "lead@example.com", "lead-pw")
    client = Client()
    client.force_login(user)
    order = CardOrder.objects.get(card_id="card-case-1")
    page = f"/admin/tracking/cardorder/{order.pk}/change/"
    assert "v1: older rules" in client.get(page).content.decode()

    rederive()

    assert f"v{RULES_VERSION} (current)" in client.get(page).content.decode()
