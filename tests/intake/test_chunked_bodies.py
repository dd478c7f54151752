"""Chunked bodies (Transfer-Encoding: chunked, no Content-Length) are read, never taken as empty.

A server that de-chunks the stream says so with `wsgi.input_terminated` (gunicorn does); the
webhook then reads it to the size cap. Where the server cannot hand the body over, the answer
is 411 (D1 may retry it), never a 400 that D1 would not retry.
"""

from __future__ import annotations

import http.client
import io
import json

import pytest
from django.conf import settings as django_settings

from tests.fixtures import spec_examples as spec
from tests.observability.cluster import Cluster, portal_env, session_database_url
from tracking.models import CardOrder, Issuer, NotificationDelivery

WEBHOOK = f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards"


def chunked(d1_client, body: bytes, *, terminated: bool):
    """POST `body` as a WSGI server that received it chunked would pass it on."""
    environ = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked"}
    environ["wsgi.input"] = io.BytesIO(body)
    if terminated:
        environ["wsgi.input_terminated"] = True
    return d1_client.generic("POST", WEBHOOK, b"", content_type="application/json", **environ)


@pytest.mark.django_db
def test_a_chunked_body_from_a_server_that_dechunks_is_stored(issuer, d1_client):
    body = json.dumps(spec.E12).encode()

    response = chunked(d1_client, body, terminated=True)

    assert response.status_code == 204, response.content
    delivery = NotificationDelivery.objects.get()
    assert (delivery.byte_size, delivery.new_count) == (len(body), 2)
    assert CardOrder.objects.count() == 2


@pytest.mark.django_db
def test_a_chunked_body_above_the_cap_answers_413(issuer, d1_client, settings):
    settings.D1_WEBHOOK_MAX_BODY_BYTES = 100

    response = chunked(d1_client, json.dumps(spec.E12).encode(), terminated=True)

    assert response.status_code == 413
    assert response.json()["errorCode"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.django_db
def test_a_chunked_body_the_server_cannot_hand_over_answers_411_not_400(issuer, d1_client):
    response = chunked(d1_client, json.dumps(spec.E1).encode(), terminated=False)

    assert response.status_code == 411
    assert response.json()["errorCode"] == "LENGTH_REQUIRED"
    assert NotificationDelivery.objects.get().status_code == 411
    assert not CardOrder.objects.exists()


def post_chunked(base_url: str, path: str, body: bytes, *, chunk_size: int = 97):
    """Send `body` in chunks over a real connection, with no Content-Length at all."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(body), chunk_size):
            chunk = body[start : start + chunk_size]
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_post_to_gunicorn_is_stored(tmp_path):
    Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Example Bank")
    cluster = Cluster(tmp_path)
    try:
        env = portal_env(
            database_url=session_database_url(),
            broker_url=django_settings.CELERY_BROKER_URL,
            cache_url="locmemcache://",
            folder=tmp_path,
        )
        web = cluster.web("web", env, workers=1, threads=2)
        body = json.dumps(spec.E12).encode()

        status, answer = post_chunked(web, WEBHOOK, body)

        assert status == 204, (answer, cluster.log_tail("web"))
        delivery = NotificationDelivery.objects.get()
        assert (delivery.status_code, delivery.byte_size, delivery.new_count) == (204, len(body), 2)
        assert CardOrder.objects.count() == 2
    finally:
        cluster.stop_all()
