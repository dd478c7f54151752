"""Where events may go: no private, loopback or link-local address unless allowed; https."""

from __future__ import annotations

import socket

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tracking.models.outbound import EventDelivery, EventEndpoint
from tracking.outbound.addresses import AddressRefused, addresses_resolve
from tracking.outbound.delivery import deliveries_sweep
from tracking.services.audit import Actor
from tracking.services.event_endpoints import endpoint_create

ACTOR = Actor.of_command("tests")


@pytest.fixture
def no_local_networks(settings):
    settings.EVENT_ENDPOINT_ALLOWED_NETWORKS = []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",  # loopback
        "http://[::1]/hook",
        "http://10.1.2.3/hook",  # private
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",  # loopback dressed as IPv6
        "http://localhost/hook",  # a name that resolves to loopback
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(no_local_networks, url):
    with pytest.raises(AddressRefused):
        addresses_resolve(url)


def test_http_is_refused_where_https_is_required(settings):
    settings.EVENT_ENDPOINT_REQUIRE_HTTPS = True
    with pytest.raises(AddressRefused, match="https"):
        addresses_resolve("http://127.0.0.1/hook")
    assert addresses_resolve("https://127.0.0.1/hook")[2] == ["127.0.0.1"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "https://user:pw@127.0.0.1/x", "not a url", "https:///x"]
)
def test_other_forms_are_refused(url):
    with pytest.raises(AddressRefused):
        addresses_resolve(url)


def test_loopback_is_allowed_only_where_settings_allow_it():
    # config.settings.test allows 127.0.0.0/8 for the tests' receivers.
    assert addresses_resolve("http://127.0.0.1:9/hook") == ("127.0.0.1", 9, ["127.0.0.1"])


@pytest.mark.django_db
def test_the_command_refuses_a_private_address(issuer, no_local_networks):
    with pytest.raises(CommandError, match="may not be sent"):
        call_command("create_event_endpoint", issuer.issuer_id, "http://10.0.0.7/hook")
    assert not EventEndpoint.objects.exists()


@pytest.mark.django_db
def test_a_name_that_resolves_elsewhere_at_send_time_is_not_called(
    issuer, receiver, post_notification, monkeypatch, settings
):
    """DNS rebinding: the name passed the check when saved, then resolves to a refused address."""
    url = receiver.url.replace("127.0.0.1", "receiver.example")
    real = socket.getaddrinfo
    answers = {"receiver.example": "127.0.0.1"}

    def resolve(host, *args, **kwargs):
        if host in answers:
            return real(answers[host], *args, **kwargs)
        return real(host, *args, **kwargs)

    # The only fake: a DNS answer that changes, which cannot be produced for real here.
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    endpoint, receiver.secret = endpoint_create(issuer=issuer, url=url, actor=ACTOR)
    answers["receiver.example"] = "10.9.8.7"
    settings.EVENT_ENDPOINT_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    post_notification(
        {
            "operations": [
                {
                    "operationId": "op-1",
                    "operation": "PRODUCE",
                    "status": "PENDING",
                    "startTime": "2026-03-02T09:15:04.120Z",
                    "cardId": "card-1",
                    "details": {"status": "CARD_PROD_REQUESTED"},
                }
            ]
        }
    )
    deliveries_sweep()
    assert receiver.received == []
    attempt = EventDelivery.objects.get(endpoint=endpoint).tries.get()
    assert attempt.status_code is None and "10.9.8.7" in attempt.error
