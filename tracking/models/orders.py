"""Card orders: one per operation for one card, with the state derived from its events."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import JSONField, Q, Value
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy
from django.utils.translation import gettext_lazy as _

from tracking.domain import conditions
from tracking.domain.flags import ReconcileReason
from tracking.models.issuers import Issuer


def translated(choices: list[tuple[str, str]]) -> list[tuple[str, Promise]]:
    """The rules' choices (marked, untranslated: the rules know no Django) in the reader's words."""
    return [(value, gettext_lazy(text)) for value, text in choices]


class CardOrder(models.Model):
    """One PRODUCE (or STANDALONE_TRACKING) operation for one card, with its derived state.

    Every state column is re-derived from the order's events by `tracking.domain.fold`;
    nothing here is
    edited by hand.
    """

    # No index of its own: every index that filters by issuer starts with it (index budget,
    # docs/benchmarks.md), and one more would only slow each new order.
    issuer = models.ForeignKey(
        Issuer,
        on_delete=models.PROTECT,
        related_name="orders",
        verbose_name=_("issuer"),
        db_index=False,
    )
    card_id = models.CharField(max_length=48, verbose_name=_("card id"))
    operation_id = models.CharField(max_length=64, verbose_name=_("operation id"))
    operation = models.CharField(max_length=64, db_default="", verbose_name=_("operation"))
    tracking_type = models.CharField(
        max_length=32, blank=True, db_default="", verbose_name=_("tracking type")
    )

    operation_status = models.CharField(
        max_length=32, blank=True, db_default="", verbose_name=_("operation status")
    )
    production_status = models.CharField(
        max_length=64, blank=True, db_default="", verbose_name=_("production status")
    )
    production_rank = models.SmallIntegerField(
        null=True, blank=True, verbose_name=_("production rank")
    )
    is_terminal = models.BooleanField(
        default=False, db_default=False, verbose_name=_("is terminal")
    )
    start_time = models.DateTimeField(null=True, blank=True, verbose_name=_("start time"))
    end_time = models.DateTimeField(null=True, blank=True, verbose_name=_("end time"))
    issuer_request_id = models.CharField(
        max_length=255, blank=True, db_default="", verbose_name=_("issuer request id")
    )
    input_file_name = models.CharField(
        max_length=255, blank=True, db_default="", verbose_name=_("input file name")
    )
    production_site = models.CharField(
        max_length=255, blank=True, db_default="", verbose_name=_("production site")
    )
    due_date = models.DateField(null=True, blank=True, verbose_name=_("due date"))
    reason = models.TextField(blank=True, db_default="", verbose_name=_("reason"))
    error_code = models.CharField(
        max_length=255, blank=True, db_default="", verbose_name=_("error code")
    )
    error = models.TextField(blank=True, db_default="", verbose_name=_("error"))

    # The latest shipment, as columns for search and filters, and whole as D1 sent it.
    shipment = models.JSONField(null=True, blank=True, verbose_name=_("shipment"))
    carrier = models.CharField(max_length=64, blank=True, db_default="", verbose_name=_("carrier"))
    tracking_number = models.CharField(
        max_length=255, blank=True, db_default="", verbose_name=_("tracking number")
    )
    tracking_url = models.URLField(
        max_length=2048, blank=True, db_default="", verbose_name=_("tracking url")
    )
    shipment_status = models.CharField(
        max_length=64, blank=True, db_default="", verbose_name=_("shipment status")
    )
    shipment_message = models.TextField(
        blank=True, db_default="", verbose_name=_("shipment message")
    )
    shipment_final = models.BooleanField(
        default=False, db_default=False, verbose_name=_("shipment final")
    )

    # Flags derived from the events.
    has_conflict = models.BooleanField(
        default=False, db_default=False, verbose_name=_("has conflict")
    )
    has_unknown_status = models.BooleanField(
        default=False, db_default=False, verbose_name=_("has unknown status")
    )
    has_gap = models.BooleanField(default=False, db_default=False, verbose_name=_("has gap"))
    unknown_codes = models.JSONField(
        default=list, blank=True, db_default=Value([], JSONField()), verbose_name=_("unknown codes")
    )
    missing_steps = models.JSONField(
        default=list, blank=True, db_default=Value([], JSONField()), verbose_name=_("missing steps")
    )
    # An open hold: the latest unknown `details.status` no completion has followed, and its reason.
    hold_code = models.CharField(
        max_length=64, blank=True, db_default="", verbose_name=_("hold code")
    )
    hold_reason = models.TextField(blank=True, db_default="", verbose_name=_("hold reason"))
    # Items without `details.status`: they count for what they say and ask D1 for the rest.
    incomplete_items = models.PositiveIntegerField(
        default=0, db_default=0, verbose_name=_("incomplete items")
    )
    state_fingerprint = models.CharField(
        max_length=64, blank=True, db_default="", verbose_name=_("state fingerprint")
    )

    # When things happened, as the portal saw them.
    stage_first_seen = models.JSONField(
        default=dict,
        blank=True,
        db_default=Value({}, JSONField()),
        verbose_name=_("stage first seen"),
    )
    stage_entered_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("stage entered at")
    )
    first_event_at = models.DateTimeField(null=True, blank=True, verbose_name=_("first event at"))
    last_event_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last event at"))
    # When the exception last changed (a new failure or error code, conflict or unknown code);
    # an acknowledgement covers the exception as it was then, whatever else arrives later.
    exception_changed_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("exception changed at")
    )
    event_count = models.PositiveIntegerField(
        default=0, db_default=0, verbose_name=_("event count")
    )
    # Which version of `tracking.domain.fold` derived this state (RULES_VERSION); older ones are
    # brought up to date by `manage.py rederive`.
    rules_version = models.PositiveSmallIntegerField(
        default=1, db_default=1, verbose_name=_("rules version")
    )

    # Reconciliation bookkeeping.
    needs_reconcile = models.BooleanField(
        default=False, db_default=False, verbose_name=_("needs reconcile")
    )
    reconcile_reason = models.CharField(
        max_length=32,
        blank=True,
        choices=translated(ReconcileReason.CHOICES),
        db_default="",
        verbose_name=_("reconcile reason"),
    )
    reconcile_next_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("reconcile next at")
    )
    reconcile_attempts = models.PositiveIntegerField(
        default=0, db_default=0, verbose_name=_("reconcile attempts")
    )
    last_reconciled_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("last reconciled at")
    )
    last_reconcile_outcome = models.CharField(
        max_length=32, blank=True, db_default="", verbose_name=_("last reconcile outcome")
    )
    # Reconciliation: a sweep's lease on the order, so that two sweeps never queue it twice.
    reconcile_claimed_until = models.DateTimeField(
        null=True, blank=True, verbose_name=_("reconcile claimed until")
    )

    # The issuer's side (tracking.services.registration): an order registered before D1 spoke
    # about it, what the issuer said then (shown where no notification says otherwise), since
    # when D1 answers 404 for its card, and an exception the portal raised on its own.
    registered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("registered at"))
    registration = models.JSONField(null=True, blank=True, verbose_name=_("registration"))
    d1_not_found_since = models.DateTimeField(
        null=True, blank=True, verbose_name=_("d1 not found since")
    )
    exception_reason = models.CharField(
        max_length=32, blank=True, db_default="", verbose_name=_("exception reason")
    )
    # A newer operation of the same card (by D1's times) took this unfinished order's place.
    # No index of its own: nearly every order has none, and the partial index below finds
    # those that do (an index on the NULLs would tempt the planner away from the queue indexes).
    superseded_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supersedes",
        db_index=False,
        verbose_name=_("superseded by"),
    )
    superseded_at = models.DateTimeField(null=True, blank=True, verbose_name=_("superseded at"))
    # The card's latest pull & change result (UPDATE_ORDER), and an accepted CANCEL that D1 has
    # not yet confirmed with CARD_PROD_CANCELED.
    change_type = models.CharField(
        max_length=32, blank=True, db_default="", verbose_name=_("change type")
    )
    change_result = models.CharField(
        max_length=16, blank=True, db_default="", verbose_name=_("change result")
    )
    cancel_accepted_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("cancel accepted at")
    )
    # A copy of OrderPrediction.p50 that the insight refresh keeps, so that lists sort by it on
    # an index (migration 0011); pages and the API read the prediction itself.
    predicted_ship_date = models.DateField(
        null=True, blank=True, editable=False, verbose_name=_("predicted ship date")
    )
    # Triage: who took the order's exception ("Take it"); staff, not derived from events.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_orders",
        verbose_name=_("taken by"),
    )

    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    # Indexed with the id (`order_recent`): the lists' default order, ties included.
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    # The carrier status's class (`tracking.domain.carrier_status`); the queues filter on it.
    shipment_class = models.CharField(
        max_length=24, blank=True, db_default="", verbose_name=_("carrier status class")
    )
    # D1's latest on-demand answer about the card: when, and which items (their fingerprints)
    # it held. The fold reads it as D1's word: it closes the holds the answer no longer holds.
    d1_answer = models.JSONField(
        default=dict,
        blank=True,
        db_default=Value({}, JSONField()),
        verbose_name=_("D1's latest on-demand answer"),
    )

    class Meta:
        verbose_name = _("card order")
        verbose_name_plural = _("card orders")
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "card_id", "operation_id"], name="order_unique_per_issuer"
            ),
        ]
        indexes = [
            models.Index(fields=["card_id"], name="order_card_id"),
            models.Index(fields=["operation_id"], name="order_operation_id"),
            models.Index(fields=["issuer_request_id"], name="order_issuer_request_id"),
            models.Index(fields=["tracking_number"], name="order_tracking_number"),
            # admin search: ids typed in another case still find their order (UPPER(x) = UPPER(y)).
            *[
                models.Index(Upper(name), name=f"order_{short}_ci")
                for name, short in (
                    ("card_id", "card"),
                    ("operation_id", "operation"),
                    ("issuer_request_id", "request"),
                    ("tracking_number", "tracking"),
                )
            ],
            models.Index(
                fields=["production_status", "stage_entered_at"], name="order_status_stage"
            ),
            # The orders list's default order (-updated_at, -id) as one index walk: orders
            # updated in the same instant (a bulk registration, a refresh) are not sorted apart.
            models.Index(fields=["updated_at", "id"], name="order_recent"),
            models.Index(fields=["operation_status", "-updated_at"], name="order_opstatus_recent"),
            models.Index(
                fields=["reconcile_next_at"],
                name="order_needs_reconcile",
                condition=Q(needs_reconcile=True),
            ),
            models.Index(fields=["due_date"], name="order_due_date"),
            # admin: the Exceptions queue, newest first, on the queue's own condition.
            models.Index(
                fields=["-updated_at"],
                name="order_exception_recent",
                condition=conditions.exception_q(),
            ),
            # admin: the Exceptions queue in the order it was flagged, so rows hold still.
            models.Index(
                fields=["exception_changed_at", "id"],
                name="order_exception_flagged",
                condition=conditions.exception_q(),
            ),
            # Stuck orders, stage by stage (the queue, the dashboard, the alert): a range of
            # each stage among the orders still waiting, read from the index alone.
            models.Index(
                fields=["production_status", "stage_entered_at"],
                name="order_waiting_stage",
                condition=conditions.waiting_q(),
            ),
            # Registered orders D1 has not spoken about yet: the silent queue and its sweep.
            models.Index(
                fields=["registered_at"],
                name="order_awaiting_first_event",
                condition=Q(event_count=0, superseded_by__isnull=True),
            ),
            models.Index(
                fields=["-updated_at"],
                name="order_superseded_recent",
                condition=conditions.superseded_q(),
            ),
        ]
        # trust: what operators may do beyond viewing, and who sees personal fields unmasked.
        permissions = [
            ("reconcile_cardorder", "Can ask D1 for an order's current state"),
            ("replay_cardorder", "Can replay an order from its stored events"),
            ("acknowledge_cardorder", "Can acknowledge an order's exception"),
            ("view_personal_fields", "Can see personal fields unmasked"),
            ("register_cardorder", "Can register orders the issuer placed"),
        ]

    def __str__(self) -> str:
        return f"{self.card_id} / {self.operation_id}"
