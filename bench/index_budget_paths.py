"""The code paths whose queries the index budget measures, run with every query recorded."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

TABLES = ("tracking_cardorder", "tracking_operationevent")
ISSUERS = ["BENCHBANK1", "BENCHBANK2", "BENCHBANK3", "BENCHBANK4", "BENCHBANK5"]


@dataclass
class Recorded:
    label: str  # the page or code path that ran it
    sql: str
    params: object  # as the code path passed them (None, a list or a tuple)
    uses: set[str] = field(default_factory=set)  # indexes of the hot tables in its plan
    ms_with: float = 0.0


class Recorder:
    """An execute wrapper keeping every distinct query that reads the hot tables."""

    def __init__(self) -> None:
        self.label = ""
        self.queries: dict[tuple[str, str], Recorded] = {}

    def __call__(self, execute, sql, params, many, context):
        if not many and any(table in sql for table in TABLES):
            head = sql.lstrip().split(None, 1)[0].upper()
            if head in ("SELECT", "WITH", "UPDATE", "DELETE", "INSERT"):
                key = (sql, repr(params))
                self.queries.setdefault(key, Recorded(self.label, sql, params))
        return execute(sql, params, many, context)


class Rollback(Exception):
    """Raised to undo what a recorded write path did."""


def record_paths(size: int, only: list[str] = ()) -> list[Recorded]:
    """Run the code paths that read card orders and events; return their distinct queries.

    `only`: just the paths whose label holds one of these words.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from tracking.insight import production_files
    from tracking.intake.ingest import ingest_operations
    from tracking.intake.projector import fold_pending
    from tracking.models import CardOrder, Issuer, NotificationDelivery, OperationEvent
    from tracking.observability.state import operations_state
    from tracking.selectors import order_queues
    from tracking.selectors.dashboard import dashboard_figures
    from tracking.services import reconcile
    from tracking.services.api_tokens import api_token_create
    from tracking.services.audit import Actor
    from tracking.services.retention import retention_prune

    user = get_user_model().objects.get(username="bench")
    client = Client(HTTP_AUTHORIZATION="Bearer bench-metrics")
    client.force_login(user)
    recorder = Recorder()

    issuer = Issuer.objects.get(issuer_id="BENCHBANK2")
    middle = size // 2
    shipped = CardOrder.objects.filter(production_status="CARD_SHIPPED", id__gte=middle).first()
    open_order = CardOrder.objects.filter(
        production_status="CARD_PROD_ONGOING", is_terminal=False, id__gte=middle
    ).first()
    file_name = shipped.input_file_name
    shipped_delivery_id = (
        OperationEvent.objects.filter(order=shipped).values_list("delivery_id", flat=True).first()
    )
    base = "/admin/tracking/cardorder/"
    today = timezone.localdate()
    pages: list[tuple[str, str]] = [
        ("orders list, unfiltered", base),
        ("orders list, page 20", base + "?p=20"),
        *[(f"queue {key}", f"{base}?queue={key}") for key in order_queues.QUEUES],
        (
            "filter issuer + production status",
            f"{base}?issuer={issuer.pk}&production_status=CARD_PROD_ONGOING",
        ),
        ("filter operation status FAILED", base + "?operation_status=FAILED"),
        ("filter time in stage: stuck", base + "?stage_age=stuck"),
        ("filter entered stage in 24 h", base + "?entered=24h"),
        ("filter carrier fedex", base + "?carrier=fedex"),
        ("filter production site", base + "?production_site=PERSO-SITE-EU-02"),
        ("filter reconcile reason gap", base + "?reconcile_reason=gap"),
        ("filter taken by me", base + "?assignee=me"),
        ("filter D1 error", base + "?has_error=yes"),
        ("filter card id contains", base + f"?card_contains={shipped.card_id[-6:]}"),
        ("filter input file (exact)", base + f"?input_file_name={file_name}"),
        (
            "filter first seen in 2 days",
            base + "?first_event_at_from="
            f"{today - dt.timedelta(days=40)}&first_event_at_to={today - dt.timedelta(days=39)}",
        ),
        (
            "filter due date in 2 days",
            base + "?due_date_from="
            f"{today - dt.timedelta(days=30)}&due_date_to={today - dt.timedelta(days=29)}",
        ),
        (
            "filter updated in 2 days",
            base + "?updated_at_from="
            f"{today - dt.timedelta(days=20)}&updated_at_to={today - dt.timedelta(days=19)}",
        ),
        ("sort by predicted ship date", base + "?queue=open&o=-predicted_ship_date"),
        ("search card id", f"{base}?q={shipped.card_id}"),
        ("search card id, other case", f"{base}?q={shipped.card_id.upper()}"),
        ("search operation id", f"{base}?q={shipped.operation_id}"),
        ("search request id", f"{base}?q={shipped.issuer_request_id}"),
        ("search tracking number", f"{base}?q={shipped.tracking_number}"),
        ("search last 4 of tracking number", f"{base}?q={shipped.tracking_number[-4:]}"),
        ("search part of a file name", f"{base}?q=_{middle // 1000:06d}."),
        ("search part of a card id", f"{base}?q={shipped.card_id[-7:]}"),
        ("order page (shipped)", f"{base}{shipped.pk}/change/"),
        ("order page (open)", f"{base}{open_order.pk}/change/"),
        ("events list", "/admin/tracking/operationevent/"),
        ("events list, outcome stale", "/admin/tracking/operationevent/?outcome=stale"),
        ("events search card id", f"/admin/tracking/operationevent/?q={shipped.card_id}"),
        ("events search operation id", f"/admin/tracking/operationevent/?q={shipped.operation_id}"),
        (
            "D1 message page",
            f"/admin/tracking/notificationdelivery/{shipped_delivery_id}/change/",
        ),
        ("production files", "/admin/tracking/productionfile/"),
        (
            "production file page",
            f"/admin/tracking/productionfile/file/?issuer={shipped.issuer_id}&name={file_name}",
        ),
        ("dashboard", "/admin/"),
        ("/metrics", "/metrics"),
    ]
    token = api_token_create(user=user, name="bench", actor=Actor.of_command("bench")).key
    api = Client(HTTP_AUTHORIZATION=f"Token {token}")
    api_pages = [
        ("API orders list", "/api/v1/orders/"),
        ("API orders by card id", f"/api/v1/orders/?card_id={shipped.card_id}"),
        ("API orders by file", f"/api/v1/orders/?input_file_name={file_name}"),
        ("API orders needing reconcile", "/api/v1/orders/?needs_reconcile=true"),
        ("API order", f"/api/v1/orders/{shipped.pk}/"),
        ("API event feed", "/api/v1/events/"),
    ]
    now = timezone.now()

    def rolled_back(run) -> None:
        """Run a path that writes, keep its queries, undo its writes."""
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = '60s'")
                run()
                raise Rollback
        except Rollback:
            pass
        except Exception as exc:  # a path too slow at this size is reported, not fatal
            print(f"  {recorder.label}: {str(exc).splitlines()[0]}", flush=True)

    def file_pages() -> None:
        figures = production_files.file_figures(issuer_id=shipped.issuer_id, name=file_name)
        production_files.file_laggards(issuer_id=shipped.issuer_id, name=file_name, figures=figures)

    # The intake: one item advances a known order, one is a new card's first word. The D1
    # message is saved first, so that the events' insert can be explained on its own later.
    payload = OperationEvent.objects.filter(order=open_order).order_by("-id").first().payload
    advanced = json.loads(json.dumps(payload))
    advanced.setdefault("details", {})["status"] = "CARD_PROD_DONE"
    new_card = json.loads(json.dumps(payload))
    new_card["cardId"] = "card-new-000000001"
    new_card["operationId"] = "op-new-000000001"
    delivery, _ = NotificationDelivery.objects.get_or_create(
        correlation_id="index-budget",
        defaults={"issuer": open_order.issuer, "status_code": 204, "issuer_id_in_path": "X"},
    )
    services = [
        ("dashboard figures", lambda: dashboard_figures(now=now)),
        ("/metrics state", lambda: operations_state(now=now)),
        (
            "reconcile sweep: due orders",
            lambda: list(reconcile.orders_due_for_reconcile(now=now, silent=False)[:100]),
        ),
        (
            "reconcile sweep: silent orders",
            lambda: list(reconcile.orders_due_for_reconcile(now=now, silent=True)[:100]),
        ),
        ("reconcile sweep: open orders", lambda: list(reconcile.orders_open_for_reconcile()[:100])),
        (
            "projector sweep: orders with events waiting",
            lambda: rolled_back(fold_pending),
        ),
        (
            "retention prune (dry run)",
            lambda: rolled_back(lambda: retention_prune(now=now, dry_run=True)),
        ),
        ("production file figures", file_pages),
        (
            "insight refresh: files changed in the last hour",
            lambda: rolled_back(
                lambda: production_files.files_refresh(
                    changed_since=now - dt.timedelta(hours=1), now=now
                )
            ),
        ),
        (
            "webhook intake (one known card advances, one new card)",
            lambda: rolled_back(
                lambda: ingest_operations(
                    issuer=open_order.issuer, operations=[advanced, new_card], delivery=delivery
                )
            ),
        ),
    ]

    def wanted(label: str) -> bool:
        return not only or any(part in label for part in only)

    with connection.execute_wrapper(recorder):
        for label, url in pages:
            if wanted("admin: " + label):
                recorder.label = "admin: " + label
                response = client.get(url)
                if response.status_code not in (200, 302):
                    print(f"  {label}: {url} answered {response.status_code}", flush=True)
        for label, url in api_pages:
            if wanted(label):
                recorder.label = label
                response = api.get(url)
                if response.status_code != 200:
                    print(f"  {label}: {url} answered {response.status_code}", flush=True)
        for label, run in services:
            if wanted(label):
                recorder.label = label
                run()
    queries = list(recorder.queries.values())
    print(f"  {len(queries)} distinct queries read the hot tables", flush=True)
    return queries
