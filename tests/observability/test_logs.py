"""Log lines: one request id per request, D1's correlation id when well formed, no payloads."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from tests.fixtures import spec_examples as spec
from tracking.infrastructure.request_ids import REQUEST_ID_PATTERN, request_id_current
from tracking.observability.logs import logging_settings
from tracking.services.audit import Actor

pytestmark = pytest.mark.django_db


class JsonLines(logging.Handler):
    """Collects what production would print: the JSON lines of the configured formatter."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        config = logging_settings(log_format="json", level="INFO")["formatters"]["structured"]
        factory = config.pop("()")
        self.setFormatter(factory(**config))
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines():
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(previous)


def test_d1_correlation_id_becomes_the_request_id_of_every_line(
    issuer, post_notification, log_lines
):
    response = post_notification(spec.E12, HTTP_X_CORRELATION_ID="d1-corr_0042")

    assert response.status_code == 204
    assert response["X-Request-ID"] == "d1-corr_0042"
    events = {line["event"].split(" ")[0]: line for line in log_lines}
    assert {"request_started", "delivery", "request_finished"} <= set(events)
    assert {line.get("request_id") for line in log_lines} == {"d1-corr_0042"}
    stored = next(line for line in log_lines if line["event"].startswith("delivery stored"))
    assert stored["logger"] == "tracking.intake.contract"
    assert stored["level"] == "info"


@pytest.mark.parametrize(
    "header", ["has spaces in it", "x" * 65, "semi;colon", "card\nforged-line"]
)
def test_malformed_correlation_id_is_replaced_by_a_generated_one(
    issuer, post_notification, log_lines, header
):
    response = post_notification(spec.E1, HTTP_X_CORRELATION_ID=header)

    request_id = response["X-Request-ID"]
    assert request_id != header
    assert REQUEST_ID_PATTERN.fullmatch(request_id)
    assert {line.get("request_id") for line in log_lines} == {request_id}
    assert not any(header in json.dumps(line) for line in log_lines)


def test_each_request_gets_its_own_id(issuer, post_notification):
    first = post_notification(spec.E1)["X-Request-ID"]
    second = post_notification(spec.E1)["X-Request-ID"]

    assert first != second


def test_log_lines_carry_ids_and_codes_never_the_payload(issuer, post_notification, log_lines):
    shipped = spec.E6["operations"][0]
    post_notification(spec.E6)
    post_notification(b'{"operations": [{"secret": "do-not-log-me"')

    text = "\n".join(json.dumps(line) for line in log_lines)
    assert "do-not-log-me" not in text
    assert shipped["details"]["shipment"]["trackingNumber"] not in text
    assert "PARSING_ERROR" in text and "delivery stored" in text


def test_request_id_is_offered_to_outgoing_calls_only_inside_a_request_or_task():
    structlog.contextvars.clear_contextvars()
    assert request_id_current() is None
    with structlog.contextvars.bound_contextvars(request_id="d1-corr_0042"):
        assert request_id_current() == "d1-corr_0042"


def test_tasks_queued_by_a_request_carry_its_request_id(
    issuer, post_notification, redis_url, django_capture_on_commit_callbacks
):
    """What a worker receives: the request id of the request that queued the task."""
    import uuid

    from kombu import Connection

    from config.celery_app import app
    from tests.services.reconcile.items import body, item
    from tracking.models import CardOrder
    from tracking.services.reconcile import orders_reconcile_now, reconcile_order_task

    assert post_notification(body(item("log-1", "CARD_PROD_REQUESTED"))).status_code == 204
    order = CardOrder.objects.get(card_id="log-1")

    # A queue of this test's own, so that no worker takes the message and nothing is left over.
    queue = f"test-{uuid.uuid4().hex[:12]}"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    reconcile_order_task.queue, reconcile_order_task._exec_options = queue, None
    try:
        with (
            structlog.contextvars.bound_contextvars(request_id="d1-corr_0042"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            orders_reconcile_now(order_ids=[order.pk], actor=Actor.of_command("tests"))
        with Connection(redis_url) as connection:
            message = connection.SimpleQueue(queue).get(timeout=5)
            message.ack()
            connection.SimpleQueue(queue).queue.delete()
    finally:
        app.conf.task_always_eager = eager
        reconcile_order_task.queue, reconcile_order_task._exec_options = None, None

    assert message.headers["task"] == "tracking.reconcile_order"
    assert message.headers["__django_structlog__"]["request_id"] == "d1-corr_0042"


PAN = "4111111111111111"  # a test card number (passes Luhn)


@pytest.mark.parametrize("path", ["/healthz", "/admin/login/", "/api/v1/orders/"])
def test_a_card_number_as_correlation_id_is_never_the_request_id(client, log_lines, path):
    response = client.get(path, HTTP_X_CORRELATION_ID=PAN)

    assert response["X-Request-ID"] != PAN
    assert REQUEST_ID_PATTERN.fullmatch(response["X-Request-ID"])
    assert PAN not in json.dumps(log_lines)


def test_query_strings_are_logged_without_their_values(admin_client, log_lines):
    query = f"q={PAN}&tracking_number__startswith=1Z9&access_token=secret-token-value&p=2&o=-1"

    admin_client.get(f"/admin/tracking/cardorder/?{query}")

    started = next(line for line in log_lines if line["event"] == "request_started")
    finished = next(line for line in log_lines if line["event"] == "request_finished")
    expected = "GET /admin/tracking/cardorder/?q&tracking_number__startswith&access_token&p=2&o=-1"
    assert started["request"] == finished["request"] == expected
    text = json.dumps(log_lines)
    assert PAN not in text and "secret-token-value" not in text and "1Z9" not in text


def test_a_card_number_in_the_issuer_path_is_masked_where_stored_and_logged(
    db, post_notification, log_lines
):
    from tracking.models import NotificationDelivery

    response = post_notification(spec.E1, issuer_id=PAN)

    assert response.status_code == 404
    assert PAN not in response.content.decode()
    delivery = NotificationDelivery.objects.get()
    assert delivery.issuer_id_in_path == "************1111"
    assert PAN not in delivery.error
    assert PAN not in json.dumps(log_lines)
    assert "************1111" in json.dumps(log_lines)


def test_a_webhook_posts_lines_are_written_after_its_answer_with_its_request_id(
    issuer, post_notification
):
    from tracking.observability.logs import AfterResponseHandler

    written = JsonLines()
    deferred = AfterResponseHandler(written)
    logger = logging.getLogger("tracking.intake.contract")
    sent: list[int] = []

    def answered(sender, **kwargs):  # the view has answered: nothing is written yet
        sent.append(len(written.lines))

    from tracking.infrastructure.signals import delivery_answered

    delivery_answered.connect(answered, dispatch_uid="test-answered")
    logger.addHandler(deferred)
    try:
        response = post_notification(spec.E1, HTTP_X_CORRELATION_ID="corr-after-1")
    finally:
        logger.removeHandler(deferred)
        delivery_answered.disconnect(dispatch_uid="test-answered")

    assert response.status_code == 204
    assert sent == [0]
    stored = [line for line in written.lines if line["event"].startswith("delivery stored")]
    assert len(stored) == 1
    assert stored[0]["request_id"] == "corr-after-1" == response["X-Request-ID"]


def test_an_error_line_is_written_at_once_inside_a_request():
    from django.core.signals import request_finished, request_started

    from tracking.observability.logs import AfterResponseHandler

    written = JsonLines()
    deferred = AfterResponseHandler(written)
    logger = logging.getLogger("tests.after-response")
    logger.addHandler(deferred)
    logger.setLevel(logging.INFO)
    try:
        request_started.send(sender=None)
        logger.info("kept until the answer is sent")
        assert written.lines == []
        logger.error("written at once")
        assert [line["event"] for line in written.lines] == [
            "kept until the answer is sent",
            "written at once",
        ]
        request_finished.send(sender=None)
        logger.info("outside a request")
        assert written.lines[-1]["event"] == "outside a request"
    finally:
        logger.removeHandler(deferred)


def test_the_logged_address_is_the_callers_unless_a_trusted_proxy_forwards_one(
    issuer, post_notification, log_lines, settings
):
    settings.D1_TRUSTED_PROXIES = ["10.0.0.1/32"]
    post_notification(spec.E1, REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR="198.51.100.7")
    forged = {line.get("ip") for line in log_lines}
    log_lines.clear()
    post_notification(spec.E2, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    forwarded = {line.get("ip") for line in log_lines}

    assert forged == {"192.0.2.10"}  # a header anyone can send is not believed
    assert forwarded == {"198.51.100.7"}
