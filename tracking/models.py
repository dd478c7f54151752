"""The portal's data: issuers, card orders (derived state), the events behind them, deliveries."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import JSONField, Q, Value
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings
from simple_history import register as history_register
from simple_history.models import HistoricalRecords

from tracking.rules import Outcome, ReconcileReason


class Issuer(models.Model):
    """A D1 issuer whose notifications the portal accepts."""

    issuer_id = models.CharField("D1 issuer id", max_length=10, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    # Where this issuer's D1 credentials live when they differ from the settings: a key id and a
    # path (or secret reference) to the private key; never the key itself.
    d1_key_id = models.CharField("D1 key id", max_length=100, blank=True)
    d1_private_key_path = models.CharField("D1 private key path", max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["issuer_id"]

    def __str__(self) -> str:
        return f"{self.issuer_id} ({self.name})" if self.name else self.issuer_id


class EventSource(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    ON_DEMAND = "on_demand", "On-demand (reconciliation)"
    REPLAY = "replay", "Replay"


class NotificationDelivery(models.Model):
    """One POST from D1 (or one on-demand answer), accepted or refused; never deleted."""

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    issuer = models.ForeignKey(Issuer, null=True, blank=True, on_delete=models.PROTECT)
    issuer_id_in_path = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, choices=EventSource, default=EventSource.WEBHOOK)
    correlation_id = models.CharField(max_length=64, blank=True, db_index=True)
    client_identity = models.CharField(max_length=255, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    byte_size = models.PositiveIntegerField(default=0)
    item_count = models.PositiveIntegerField(default=0)
    new_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    # Kept only for refused bodies (capped): accepted items live on their events.
    body = models.TextField(blank=True)
    body_truncated = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "notification deliveries"
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(
                fields=["status_code", "-received_at"],
                name="delivery_status_recent",
            ),
            # observability: each issuer's latest POST, without walking back through the
            # others' (a silent issuer would otherwise cost a scan of every delivery).
            models.Index(
                fields=["issuer", "source", "-received_at"], name="delivery_issuer_recent"
            ),
        ]

    def __str__(self) -> str:
        return f"delivery #{self.pk} ({self.status_code})"

    @property
    def is_rejected(self) -> bool:
        return self.status_code >= 400 or self.rejected_count > 0


class CardOrder(models.Model):
    """One PRODUCE (or STANDALONE_TRACKING) operation for one card, with its derived state.

    Every state column is re-derived from the order's events by `tracking.rules`; nothing here is
    edited by hand.
    """

    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="orders")
    card_id = models.CharField(max_length=48)
    operation_id = models.CharField(max_length=64)
    operation = models.CharField(max_length=64, db_default="")
    tracking_type = models.CharField(max_length=32, blank=True, db_default="")

    operation_status = models.CharField(max_length=32, blank=True, db_default="")
    production_status = models.CharField(max_length=64, blank=True, db_default="")
    production_rank = models.SmallIntegerField(null=True, blank=True)
    is_terminal = models.BooleanField(default=False, db_default=False)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    issuer_request_id = models.CharField(max_length=255, blank=True, db_default="")
    input_file_name = models.CharField(max_length=255, blank=True, db_default="")
    production_site = models.CharField(max_length=255, blank=True, db_default="")
    due_date = models.DateField(null=True, blank=True)
    reason = models.TextField(blank=True, db_default="")
    error_code = models.CharField(max_length=255, blank=True, db_default="")
    error = models.TextField(blank=True, db_default="")

    # The latest shipment, as columns for search and filters, and whole as D1 sent it.
    shipment = models.JSONField(null=True, blank=True)
    carrier = models.CharField(max_length=64, blank=True, db_default="")
    tracking_number = models.CharField(max_length=255, blank=True, db_default="")
    tracking_url = models.URLField(max_length=2048, blank=True, db_default="")
    shipment_status = models.CharField(max_length=64, blank=True, db_default="")
    shipment_message = models.TextField(blank=True, db_default="")
    shipment_final = models.BooleanField(default=False, db_default=False)

    # Flags derived from the events.
    has_conflict = models.BooleanField(default=False, db_default=False)
    has_unknown_status = models.BooleanField(default=False, db_default=False)
    has_gap = models.BooleanField(default=False, db_default=False)
    unknown_codes = models.JSONField(default=list, blank=True, db_default=Value([], JSONField()))
    missing_steps = models.JSONField(default=list, blank=True, db_default=Value([], JSONField()))
    state_fingerprint = models.CharField(max_length=64, blank=True, db_default="")

    # When things happened, as the portal saw them.
    stage_first_seen = models.JSONField(default=dict, blank=True, db_default=Value({}, JSONField()))
    stage_entered_at = models.DateTimeField(null=True, blank=True)
    first_event_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0, db_default=0)

    # Reconciliation bookkeeping.
    needs_reconcile = models.BooleanField(default=False, db_default=False)
    reconcile_reason = models.CharField(
        max_length=32, blank=True, choices=ReconcileReason.CHOICES, db_default=""
    )
    reconcile_next_at = models.DateTimeField(null=True, blank=True)
    reconcile_attempts = models.PositiveIntegerField(default=0, db_default=0)
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    last_reconcile_outcome = models.CharField(max_length=32, blank=True, db_default="")
    # Reconciliation: a sweep's lease on the order, so that two sweeps never queue it twice.
    reconcile_claimed_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
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
            models.Index(fields=["input_file_name"], name="order_input_file_name"),
            models.Index(
                fields=["production_status", "stage_entered_at"], name="order_status_stage"
            ),
            models.Index(fields=["operation_status", "-updated_at"], name="order_opstatus_recent"),
            models.Index(
                fields=["reconcile_next_at"],
                name="order_needs_reconcile",
                condition=Q(needs_reconcile=True),
            ),
            models.Index(fields=["due_date"], name="order_due_date"),
            # admin: the Exceptions queue, newest first (same condition as
            # tracking.services.order_queues.exception_q).
            models.Index(
                fields=["-updated_at"],
                name="order_exception_recent",
                condition=Q(production_status__in=["CARD_PROD_EXCEPTION", "DATA_EXCEPTION"])
                | (Q(operation_status="FAILED") & ~Q(production_status__in=["CARD_PROD_CANCELED"]))
                | Q(has_conflict=True)
                | Q(has_unknown_status=True)
                | ~Q(error_code=""),
            ),
            # Reconciliation: the sweep looks only at open orders and shipped ones awaiting
            # delivery, a small part of all orders once most have shipped.
            models.Index(
                fields=["stage_entered_at"], name="order_open", condition=Q(is_terminal=False)
            ),
            models.Index(
                fields=["last_event_at"],
                name="order_awaiting_delivery",
                condition=Q(production_status="CARD_SHIPPED", shipment_final=False),
            ),
        ]
        # trust: what operators may do beyond viewing, and who sees personal fields unmasked.
        permissions = [
            ("reconcile_cardorder", "Can ask D1 for an order's current state"),
            ("replay_cardorder", "Can replay an order from its stored events"),
            ("acknowledge_cardorder", "Can acknowledge an order's exception"),
            ("view_personal_fields", "Can see personal fields unmasked"),
        ]

    def __str__(self) -> str:
        return f"{self.card_id} / {self.operation_id}"

    def timeline(self) -> models.QuerySet[OperationEvent]:
        """The order's events and the card's other operations (UPDATE_ORDER, ...), as they came."""
        return OperationEvent.objects.filter(
            Q(order=self) | Q(order__isnull=True, issuer_id=self.issuer_id, card_id=self.card_id)
        ).order_by("first_received_at", "id")


class OperationEvent(models.Model):
    """One distinct notification item, append-only; copies only raise `times_received`."""

    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="events")
    order = models.ForeignKey(
        CardOrder, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    delivery = models.ForeignKey(
        NotificationDelivery, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    fingerprint = models.CharField(max_length=64)
    card_id = models.CharField(max_length=48, blank=True)
    operation_id = models.CharField(max_length=64, blank=True)
    operation = models.CharField(max_length=64, blank=True)
    operation_status = models.CharField(max_length=32, blank=True)
    production_status = models.CharField(max_length=64, blank=True)
    shipment_status = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
    source = models.CharField(max_length=16, choices=EventSource, default=EventSource.WEBHOOK)
    first_received_at = models.DateTimeField(default=timezone.now)
    last_received_at = models.DateTimeField(default=timezone.now)
    times_received = models.PositiveIntegerField(default=1)
    outcome = models.CharField(max_length=32, choices=Outcome.CHOICES, blank=True)
    validation_error = models.TextField(blank=True)
    # Null between storing and applying; the safety-net sweep applies what a crash left behind.
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["first_received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "fingerprint"], name="event_unique_fingerprint"
            ),
        ]
        indexes = [
            models.Index(fields=["order", "first_received_at"], name="event_order_timeline"),
            models.Index(fields=["issuer", "card_id"], name="event_card"),
            models.Index(fields=["operation_id"], name="event_operation_id"),
            models.Index(fields=["outcome", "-first_received_at"], name="event_outcome_recent"),
            models.Index(
                fields=["first_received_at"],
                name="event_unapplied",
                condition=Q(applied_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_id} {self.production_status or self.operation} ({self.outcome})"


# ---------------------------------------------------------------------------- trust boundary

# Staff edits of configuration keep their history (who, when, what); events need none.
history_register(Issuer)


class D1Client(models.Model):
    """The OAuth client D1 gets bearer tokens with, bound to the one issuer it may notify for."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="d1_client"
    )
    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="d1_clients")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "D1 client"
        ordering = ["issuer__issuer_id", "id"]

    def __str__(self) -> str:
        return f"D1 client {self.application.client_id} for {self.issuer.issuer_id}"


class AppendOnlyQuerySet(models.QuerySet):
    """Rows that are evidence: no bulk update or delete through the ORM."""

    def update(self, **kwargs):
        raise PermissionError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise PermissionError(f"{self.model.__name__} rows are append-only")


class AuditEntry(models.Model):
    """One staff action (or security-relevant change): who, when, what, on what, from where."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the entry still says who after the account is gone.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise PermissionError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit entries are append-only")


# ---------------------------------------------------------------------------- reconciliation


class ReconcileOutcome(models.TextChoices):
    CHANGED = "changed", "Changed the order"
    UNCHANGED = "unchanged", "D1 said the same"
    NOT_FOUND = "not_found", "Unknown at D1"
    ERROR = "error", "Error"


class ReconcileTrigger(models.TextChoices):
    SWEEP = "sweep", "Sweep"
    STAFF = "staff", "Staff (reconcile now)"
    COMMAND = "command", "Command"


class ReconcileAttempt(models.Model):
    """One on-demand productionStatus call for one order and what it did; never edited."""

    order = models.ForeignKey(CardOrder, on_delete=models.PROTECT, related_name="reconcile_history")
    started_at = models.DateTimeField(default=timezone.now)
    trigger = models.CharField(
        max_length=16, choices=ReconcileTrigger, default=ReconcileTrigger.SWEEP
    )
    # Why the order was asked about: a flag (conflict, unknown_status, gap), stage_threshold,
    # past_due, awaiting_delivery, or empty when staff or a command asked without a reason.
    reason = models.CharField(max_length=32, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    correlation_id = models.CharField(max_length=64, blank=True)
    # None when no HTTP answer came back (timeout, connection refused, configuration).
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=ReconcileOutcome)
    error = models.TextField(blank=True)
    items_received = models.PositiveIntegerField(default=0)
    status_before = models.CharField(max_length=64, blank=True)
    status_after = models.CharField(max_length=64, blank=True)
    delivery = models.ForeignKey(
        NotificationDelivery, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["order", "-started_at"], name="attempt_order_recent"),
            models.Index(fields=["outcome", "-started_at"], name="attempt_outcome_recent"),
        ]

    def __str__(self) -> str:
        return f"reconcile #{self.pk} of order {self.order_id}: {self.outcome}"


# ---------------------------------------------------------------------------- admin


class OrderAcknowledgement(models.Model):
    """A staff note that an order's exception was seen and handled.

    It takes the order out of the Exceptions queue until a newer event arrives for the order.
    """

    order = models.ForeignKey(CardOrder, on_delete=models.PROTECT, related_name="acknowledgements")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["order", "-created_at"], name="ack_order_recent")]

    def __str__(self) -> str:
        return f"acknowledgement of {self.order_id} at {self.created_at:%Y-%m-%d %H:%M}"
