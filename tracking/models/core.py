"""The portal's data: issuers, card orders (derived state), the events behind them, deliveries."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import JSONField, Q, Value
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings
from simple_history import register as history_register
from simple_history.models import HistoricalRecords

from tracking.domain import conditions
from tracking.domain.flags import ReconcileReason
from tracking.domain.fold import Outcome


def translated(choices: list[tuple[str, str]]) -> list[tuple[str, Promise]]:
    """The rules' choices (marked, untranslated: the rules know no Django) in the reader's words."""
    return [(value, gettext_lazy(text)) for value, text in choices]


# An issuer's D1 key id names its key file (<D1_KEY_DIR>/<key id>.pem): a file name, no path.
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# D1's issuerId: exactly 10 characters (SPEC §1.1), letters and digits as every issuer D1 names;
# it becomes a segment of D1's URLs, so '/', '?', '#', '@' and '.' never enter.
ISSUER_ID_PATTERN = r"^[A-Za-z0-9]{10}$"


def zone_by_name(name: str) -> dt.tzinfo:
    """The zone of an IANA name; UTC for an empty or unknown name."""
    if name in ("", "UTC"):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def zone_name_validate(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            _("%(name)s is not a time zone name such as UTC or Europe/Paris."),
            params={"name": name},
        ) from exc


class Issuer(models.Model):
    """A D1 issuer whose notifications the portal accepts."""

    issuer_id = models.CharField(
        _("D1 issuer id"),
        max_length=10,
        unique=True,
        validators=[
            RegexValidator(
                ISSUER_ID_PATTERN, _("Exactly 10 letters or digits, as D1 names issuers.")
            )
        ],
    )
    name = models.CharField(max_length=200, verbose_name=_("name"))
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    # The key id of this issuer's own D1 key, when it differs from the settings. The key is read
    # from <D1_KEY_DIR>/<key id>.pem (tracking.d1.client.D1Config): where keys live is never
    # taken from the database, so no admin screen can point the worker at another file.
    d1_key_id = models.CharField(
        _("D1 key id"),
        max_length=100,
        blank=True,
        validators=[
            RegexValidator(
                KEY_ID_PATTERN,
                "Letters, digits, dot, dash and underscore; starting with a letter or digit.",
            )
        ],
    )
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    # The zone a time D1 sends without one is read in (the timeline says when it was assumed).
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        default="UTC",
        db_default="UTC",
        validators=[zone_name_validate],
        help_text=_(
            "Times D1 sends without a zone are read in this zone (an IANA name such as "
            "Asia/Tokyo; empty is UTC). After a change, run `manage.py rederive --issuer`."
        ),
    )

    class Meta:
        verbose_name = _("issuer")
        verbose_name_plural = _("issuers")
        ordering = ["issuer_id"]

    def __str__(self) -> str:
        return f"{self.issuer_id} ({self.name})" if self.name else self.issuer_id

    @property
    def zone(self) -> dt.tzinfo:
        """The issuer's zone; UTC when the stored name is not a zone this system knows."""
        return zone_by_name(self.time_zone)


class EventSource(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    ON_DEMAND = "on_demand", "On-demand (reconciliation)"


class NotificationDelivery(models.Model):
    """One POST from D1 (or one on-demand answer), accepted or refused; never deleted."""

    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    issuer = models.ForeignKey(
        Issuer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text=_("The registered issuer the message was for; empty when the issuer is unknown."),
        verbose_name=_("issuer"),
    )
    issuer_id_in_path = models.CharField(
        _("issuer id in the address"),
        max_length=64,
        blank=True,
        help_text=_("The issuer id D1 put in the address it called, as sent."),
    )
    source = models.CharField(
        _("came from"),
        max_length=16,
        choices=EventSource,
        default=EventSource.WEBHOOK,
        help_text=_("Sent by D1, or D1's answer when the portal asked."),
    )
    correlation_id = models.CharField(
        _("correlation id"),
        max_length=64,
        blank=True,
        db_index=True,
        help_text=_("Quote it to D1 support or search the logs with it."),
    )
    client_identity = models.CharField(
        _("caller"),
        max_length=255,
        blank=True,
        help_text=_("Who called, as the portal authenticated them (D1 client or certificate)."),
    )
    remote_addr = models.CharField(_("caller's address"), max_length=64, blank=True)
    content_type = models.CharField(_("format sent"), max_length=255, blank=True)
    byte_size = models.PositiveIntegerField(_("size (bytes)"), default=0)
    item_count = models.PositiveIntegerField(
        _("items"), default=0, help_text=_("Notification items in the message.")
    )
    new_count = models.PositiveIntegerField(
        _("new items"), default=0, help_text=_("Items the portal had not seen before.")
    )
    duplicate_count = models.PositiveIntegerField(
        _("repeated items"),
        default=0,
        help_text=_("Items D1 had already sent; counted, not stored again."),
    )
    rejected_count = models.PositiveIntegerField(
        _("refused items"),
        default=0,
        help_text=_("Items that failed validation; kept with their reason."),
    )
    status_code = models.PositiveSmallIntegerField(
        _("portal's answer (HTTP)"),
        help_text=_("What the portal answered D1: 2xx accepted, 4xx or 5xx refused."),
    )
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error = models.TextField(
        _("error"), blank=True, help_text=_("Why the message or an item was refused.")
    )
    # The body as received, capped: a refused one as text (card numbers masked), an accepted
    # one (while D1_KEEP_ACCEPTED_BODIES is on) written from its items as they are stored. The
    # D1 message page shows it and links every order it named.
    body = models.TextField(_("body as received"), blank=True)
    body_truncated = models.BooleanField(
        _("body cut short"),
        default=False,
        help_text=_("The body was longer than the portal keeps; only its start is stored."),
    )

    class Meta:
        verbose_name = _("D1 message")
        verbose_name_plural = _("D1 messages")
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
        return f"D1 message #{self.pk} ({self.status_code})"

    @property
    def is_rejected(self) -> bool:
        return self.status_code >= 400 or self.rejected_count > 0


class RefusalTally(models.Model):
    """Refused calls counted per source, minute and reason, instead of one row per call.

    Calls refused at the gate (authentication, permission, method, rate limit), of which nothing
    is kept, cost one counter, so a flood from one address adds at most one row a minute per
    reason. Never edited by staff.
    """

    minute = models.DateTimeField(_("minute"), db_index=True)
    source = models.CharField(
        _("caller's address"), max_length=64, help_text=_("The caller's address (IPv6: its /64).")
    )
    status_code = models.PositiveSmallIntegerField(
        _("portal's answer (HTTP)"),
        help_text=_(
            "401 not authenticated, 403 not allowed, 405 wrong method, 429 too many calls."
        ),
    )
    error_code = models.CharField(_("reason code"), max_length=64, blank=True)
    count = models.PositiveIntegerField(
        _("calls"), default=1, help_text=_("Calls refused for this reason in this minute.")
    )
    first_at = models.DateTimeField(_("first call"))
    last_at = models.DateTimeField(_("last call"))
    # Of the latest call in the minute: enough to tell D1 from a stranger.
    issuer_id_in_path = models.CharField(
        _("issuer id in the address"),
        max_length=64,
        blank=True,
        help_text=_("Of the latest call: the issuer id in the address it called."),
    )
    client_identity = models.CharField(
        _("caller"),
        max_length=255,
        blank=True,
        help_text=_("Of the latest call: who it said it was."),
    )
    correlation_id = models.CharField(
        _("correlation id"),
        max_length=64,
        blank=True,
        help_text=_("Of the latest call; search the logs with it."),
    )
    error = models.CharField(
        _("reason"),
        max_length=255,
        blank=True,
        help_text=_("Of the latest call: why it was refused."),
    )

    class Meta:
        verbose_name = _("refused call")
        verbose_name_plural = _("refused calls")
        ordering = ["-minute", "-last_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "source", "status_code", "error_code"],
                name="refusal_tally_per_minute",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.count} times {self.status_code} {self.error_code} from {self.source}"


class CardOrder(models.Model):
    """One PRODUCE (or STANDALONE_TRACKING) operation for one card, with its derived state.

    Every state column is re-derived from the order's events by `tracking.domain.rules`;
    nothing here is
    edited by hand.
    """

    issuer = models.ForeignKey(
        Issuer, on_delete=models.PROTECT, related_name="orders", verbose_name=_("issuer")
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
    # Which version of `tracking.domain.rules` derived this state (RULES_VERSION); older ones are
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
            models.Index(fields=["input_file_name"], name="order_input_file_name"),
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
            # Reconciliation: the sweep looks only at open orders and shipped ones awaiting
            # delivery, a small part of all orders once most have shipped.
            models.Index(
                fields=["stage_entered_at"], name="order_open", condition=Q(is_terminal=False)
            ),
            # Stuck orders, stage by stage (the queue, the dashboard, the alert): a range of
            # each stage among the orders still waiting, read from the index alone.
            models.Index(
                fields=["production_status", "stage_entered_at"],
                name="order_waiting_stage",
                condition=conditions.waiting_q(),
            ),
            models.Index(
                fields=["last_event_at"],
                name="order_awaiting_delivery",
                condition=conditions.awaiting_delivery_q(),
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
            models.Index(
                fields=["reconcile_next_at"],
                name="order_cancel_unconfirmed",
                condition=conditions.cancel_unconfirmed_q(),
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

    def timeline(self) -> models.QuerySet[OperationEvent]:
        """The order's events and the card's other operations (UPDATE_ORDER, ...), as they came."""
        return (
            OperationEvent.objects.filter(
                Q(order=self)
                | Q(order__isnull=True, issuer_id=self.issuer_id, card_id=self.card_id)
            )
            .select_related("change")
            .order_by("first_received_at", "id")
        )


class OperationEvent(models.Model):
    """One distinct notification item, append-only; copies only raise `times_received`."""

    issuer = models.ForeignKey(
        Issuer, on_delete=models.PROTECT, related_name="events", verbose_name=_("issuer")
    )
    order = models.ForeignKey(
        CardOrder,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        verbose_name=_("order"),
    )
    delivery = models.ForeignKey(
        NotificationDelivery,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("D1 message"),
        help_text=_("The message that first brought this item."),
    )
    fingerprint = models.CharField(
        _("content fingerprint"),
        max_length=64,
        help_text=_("A digest of the item's content: the same item sent again has the same one."),
    )
    card_id = models.CharField(_("card id"), max_length=48, blank=True)
    operation_id = models.CharField(_("operation id"), max_length=64, blank=True)
    operation = models.CharField(
        _("operation"),
        max_length=64,
        blank=True,
        help_text=_("Card production, tracking only or order change."),
    )
    operation_status = models.CharField(
        _("operation status"),
        max_length=32,
        blank=True,
        help_text=_("In progress, succeeded or failed."),
    )
    production_status = models.CharField(
        _("production step"),
        max_length=64,
        blank=True,
        help_text=_("Where the card was in production."),
    )
    shipment_status = models.CharField(
        _("carrier status"), max_length=64, blank=True, help_text=_("What the carrier reported.")
    )
    payload = models.JSONField(_("item as received"))
    source = models.CharField(
        _("came from"), max_length=16, choices=EventSource, default=EventSource.WEBHOOK
    )
    first_received_at = models.DateTimeField(_("first received"), default=timezone.now)
    last_received_at = models.DateTimeField(_("last received"), default=timezone.now)
    times_received = models.PositiveIntegerField(
        _("times received"), default=1, help_text=_("How often D1 sent this same item.")
    )
    outcome = models.CharField(
        _("what it did"),
        max_length=32,
        choices=translated(Outcome.CHOICES),
        blank=True,
        help_text=_("What this item did to its order."),
    )
    validation_error = models.TextField(
        _("why it was refused"), blank=True, help_text=_("Empty when the item passed validation.")
    )
    # Null between storing and applying; the safety-net sweep applies what a crash left behind.
    applied_at = models.DateTimeField(
        _("applied"),
        null=True,
        blank=True,
        help_text=_("When the order was updated from this item; empty until then."),
    )

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
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


class OrderChangeResult(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    PENDING = "pending", "Pending"
    UNKNOWN = "unknown", "Unknown"


class OrderChange(models.Model):
    """One pull & change result (an UPDATE_ORDER item), parsed, linked to the card's order.

    Unknown shapes are kept as they came, flagged (`is_known_shape` false), never refused.
    """

    issuer = models.ForeignKey(
        Issuer, on_delete=models.PROTECT, related_name="+", verbose_name=_("issuer")
    )
    # Derived from its event: it goes when the event goes (retention), never otherwise.
    event = models.OneToOneField(
        OperationEvent, on_delete=models.CASCADE, related_name="change", verbose_name=_("event")
    )
    order = models.ForeignKey(
        CardOrder,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="changes",
        verbose_name=_("order"),
    )
    card_id = models.CharField(max_length=48, verbose_name=_("card id"))
    operation_id = models.CharField(max_length=64, blank=True, verbose_name=_("operation id"))
    change_type = models.CharField(max_length=32, blank=True, verbose_name=_("change type"))
    result = models.CharField(max_length=16, choices=OrderChangeResult, verbose_name=_("result"))
    reason = models.TextField(blank=True, verbose_name=_("reason"))
    is_known_shape = models.BooleanField(default=True, verbose_name=_("is known shape"))
    start_time = models.DateTimeField(null=True, blank=True, verbose_name=_("start time"))
    end_time = models.DateTimeField(null=True, blank=True, verbose_name=_("end time"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("pull & change result")
        verbose_name_plural = _("pull & change results")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["issuer", "card_id"], name="change_card"),
            models.Index(fields=["order", "-created_at"], name="change_order_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.change_type or 'change'} {self.result} for {self.card_id}"


# ---------------------------------------------------------------------------- trust boundary

# Staff edits of configuration keep their history (who, when, what); events need none.
history_register(Issuer)


class D1Client(models.Model):
    """The OAuth client D1 gets bearer tokens with, bound to the one issuer it may notify for."""

    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="d1_client",
        verbose_name=_("application"),
    )
    issuer = models.ForeignKey(
        Issuer, on_delete=models.PROTECT, related_name="d1_clients", verbose_name=_("issuer")
    )
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("D1 client")
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

    at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("at"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("user"),
    )
    # Kept as text too, so the entry still says who after the account is gone.
    username = models.CharField(max_length=150, blank=True, verbose_name=_("username"))
    action = models.CharField(max_length=64, db_index=True, verbose_name=_("action"))
    target_type = models.CharField(max_length=100, blank=True, verbose_name=_("target type"))
    target_id = models.CharField(max_length=64, blank=True, verbose_name=_("target id"))
    target_repr = models.CharField(max_length=255, blank=True, verbose_name=_("target repr"))
    details = models.JSONField(
        default=dict, blank=True, encoder=DjangoJSONEncoder, verbose_name=_("details")
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True, verbose_name=_("ip address"))
    user_agent = models.CharField(max_length=255, blank=True, verbose_name=_("user agent"))

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
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

    order = models.ForeignKey(
        CardOrder,
        on_delete=models.PROTECT,
        related_name="reconcile_history",
        verbose_name=_("card order"),
    )
    started_at = models.DateTimeField(_("asked at"), default=timezone.now)
    trigger = models.CharField(
        _("asked by"),
        max_length=16,
        choices=ReconcileTrigger,
        default=ReconcileTrigger.SWEEP,
        help_text=_("The automatic check, a staff member, or a command."),
    )
    # Why the order was asked about: a flag (conflict, unknown_status, gap), stage_threshold,
    # past_due, awaiting_delivery, or empty when staff or a command asked without a reason.
    reason = models.CharField(_("why asked"), max_length=32, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("staff member"),
    )
    correlation_id = models.CharField(
        _("correlation id"),
        max_length=64,
        blank=True,
        help_text=_("Quote it to D1 support or search the logs with it."),
    )
    # None when no HTTP answer came back (timeout, connection refused, configuration).
    http_status = models.PositiveSmallIntegerField(
        _("D1's HTTP status"),
        null=True,
        blank=True,
        help_text=_("Empty when D1 did not answer (time-out, connection refused)."),
    )
    latency_ms = models.PositiveIntegerField(
        _("time to answer (ms)"), null=True, blank=True, help_text=_("How long D1 took to answer.")
    )
    outcome = models.CharField(_("result"), max_length=16, choices=ReconcileOutcome)
    error = models.TextField(_("error"), blank=True, help_text=_("Why the call to D1 failed."))
    items_received = models.PositiveIntegerField(
        _("items in the answer"), default=0, help_text=_("Notification items D1 returned.")
    )
    status_before = models.CharField(_("production step before"), max_length=64, blank=True)
    status_after = models.CharField(_("production step after"), max_length=64, blank=True)
    # What D1 answered for this order, as staff read it: the operation's status, the production
    # status, D1's error and the shipment (kept even when the answer repeated a stored item).
    answer = models.JSONField(
        _("D1's answer"), default=dict, blank=True, db_default=Value({}, JSONField())
    )
    delivery = models.ForeignKey(
        NotificationDelivery,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("D1 message"),
        help_text=_("The answer as the portal stored it."),
    )

    class Meta:
        # One name for it on every page: the sidebar, the list's title, the order page.
        verbose_name = _("call to D1")
        verbose_name_plural = _("calls to D1")
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

    It takes the order out of the Exceptions queue until the exception itself changes (a new
    failure or error code, a new conflict, a new unknown code): `CardOrder.exception_changed_at`.
    """

    order = models.ForeignKey(
        CardOrder,
        on_delete=models.PROTECT,
        related_name="acknowledgements",
        verbose_name=_("order"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("user"),
    )
    note = models.TextField(verbose_name=_("note"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("acknowledgement")
        verbose_name_plural = _("acknowledgements")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["order", "-created_at"], name="ack_order_recent")]

    def __str__(self) -> str:
        return f"acknowledgement of {self.order_id} at {self.created_at:%Y-%m-%d %H:%M}"


# ---------------------------------------------------------------------------- read API


class ReadApiToken(models.Model):
    """A read-API token of one user: only its SHA-256 digest is kept, and it expires.

    The token itself is shown once when it is made (`tracking.services.api_tokens`); deleting
    the row revokes it.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="read_api_tokens",
        verbose_name=_("user"),
    )
    name = models.CharField(
        max_length=100,
        help_text=_("What the token is for (an integration)."),
        verbose_name=_("name"),
    )
    # The first characters of the token, so that staff can tell tokens apart; not enough to use.
    prefix = models.CharField(max_length=8, verbose_name=_("prefix"))
    digest = models.CharField(max_length=64, unique=True, verbose_name=_("digest"))
    created_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("created at")
    )
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    # Narrower than its user's grant when chosen at creation; empty: every issuer the user
    # may see (tracking.services.issuer_grants).
    issuers = models.ManyToManyField(
        Issuer,
        blank=True,
        related_name="+",
        verbose_name=_("issuers"),
        help_text=_(
            "Only these issuers (within its user's grant); none chosen: all of the user's."
        ),
    )

    class Meta:
        verbose_name = _("read-API token")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


# ---------------------------------------------------------------------------- staff preferences


def validate_time_zone(value: str) -> None:
    """An IANA zone name (Asia/Tokyo, UTC); empty means the site's default."""
    if value and value not in available_timezones():
        raise ValidationError(_("“%(zone)s” is not a time zone."), params={"zone": value})


class StaffPreference(models.Model):
    """The language and time zone one staff member reads the back office in.

    Empty means "not chosen": the browser's language, then the site's (`LANGUAGE_CODE`); the
    site's zone (`PORTAL_TIME_ZONE`, else the zone of the language). `tracking.middleware.
    StaffPreferenceMiddleware` applies them on every request.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="staff_preference",
        verbose_name=_("staff member"),
    )
    language = models.CharField(
        _("language"),
        max_length=8,
        blank=True,
        choices=settings.LANGUAGES,
        help_text=_("Empty: the language your browser asks for."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("Every time in the back office is shown in this zone. Empty: the site's zone."),
    )

    class Meta:
        verbose_name = _("my preferences")
        verbose_name_plural = _("my preferences")

    def __str__(self) -> str:
        return str(_("Preferences of %(user)s") % {"user": self.user})


# ---------------------------------------------------------------------------- grants


class IssuerGrant(models.Model):
    """One issuer a staff user may see and act on; superusers see every issuer without one.

    Read through `tracking.services.issuer_grants`, changed through its `issuers_grant` and
    `issuers_revoke` (audited).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="issuer_grants",
        verbose_name=_("user"),
    )
    issuer = models.ForeignKey(
        Issuer, on_delete=models.CASCADE, related_name="grants", verbose_name=_("issuer")
    )
    granted_at = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=_("granted at")
    )

    class Meta:
        verbose_name = _("issuer grant")
        verbose_name_plural = _("issuer grants")
        ordering = ["issuer__issuer_id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "issuer"], name="grant_unique_per_user_issuer")
        ]

    def __str__(self) -> str:
        return f"{self.issuer.issuer_id} for user {self.user_id}"
