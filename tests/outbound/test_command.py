"""`manage.py create_event_endpoint`: the secret once, the types checked, audited."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tracking.models import AuditEntry
from tracking.models.outbound import EventEndpoint
from tracking.outbound.secrets import secret_decrypt

pytestmark = pytest.mark.django_db


def test_it_prints_the_secret_once_and_stores_it_encrypted(issuer):
    out = io.StringIO()
    call_command(
        "create_event_endpoint",
        issuer.issuer_id,
        "http://127.0.0.1:9000/hooks",
        "--types",
        "card_order.shipped",
        "card_order.delivered",
        stdout=out,
        stderr=io.StringIO(),
    )
    lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert lines["secret"].startswith("whsec_")
    endpoint = EventEndpoint.objects.get(pk=lines["endpoint"])
    assert endpoint.event_types == ["card_order.delivered", "card_order.shipped"]
    assert lines["secret"] not in endpoint.secret_encrypted
    assert secret_decrypt(endpoint.secret_encrypted) == lines["secret"]
    entry = AuditEntry.objects.get(action="event_endpoint.create")
    assert entry.username == "manage.py create_event_endpoint"
    assert lines["secret"] not in str(entry.details)


def test_unknown_issuer_and_type_are_clear_errors(issuer):
    with pytest.raises(CommandError, match="No issuer"):
        call_command("create_event_endpoint", "NOPE", "http://127.0.0.1/x")
    with pytest.raises(CommandError, match=r"Unknown event type card_order\.lost"):
        call_command(
            "create_event_endpoint",
            issuer.issuer_id,
            "http://127.0.0.1/x",
            "--types",
            "card_order.lost",
        )
    assert not EventEndpoint.objects.exists()
