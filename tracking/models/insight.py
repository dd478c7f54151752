"""Insight rollups: stage spans per order, stage statistics, production files, predictions.

All of it is derived from `CardOrder` columns by `tracking.insight.refresh` (a beat task keeps it
fresh); nothing here is evidence, and any of it can be rebuilt at any time.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class StageSpan(models.Model):
    """How long one order spent in one stage, and how long it took from there to shipment.

    One row per stage of the PRODUCE path the order entered and has left (or, for a shipped
    order, from which it shipped). For CARD_SHIPPED, `left_at` is when the carrier reported
    delivery: the row is the shipment time of its carrier.
    """

    order = models.ForeignKey(
        "tracking.CardOrder", on_delete=models.CASCADE, related_name="+", verbose_name=_("order")
    )
    issuer = models.ForeignKey(
        "tracking.Issuer", on_delete=models.CASCADE, related_name="+", verbose_name=_("issuer")
    )
    production_site = models.CharField(
        max_length=255, blank=True, verbose_name=_("production site")
    )
    carrier = models.CharField(max_length=64, blank=True, verbose_name=_("carrier"))
    stage = models.CharField(max_length=64, verbose_name=_("stage"))
    entered_at = models.DateTimeField(verbose_name=_("entered at"))
    # When the next stage of the path began (null while in the stage, or when it was skipped).
    left_at = models.DateTimeField(null=True, blank=True, verbose_name=_("left at"))
    duration_s = models.FloatField(null=True, blank=True, verbose_name=_("duration s"))
    # When the order shipped, and the time from entering this stage to shipment.
    shipped_at = models.DateTimeField(null=True, blank=True, verbose_name=_("shipped at"))
    to_ship_s = models.FloatField(null=True, blank=True, verbose_name=_("to ship s"))

    class Meta:
        verbose_name = _("time in a stage")
        verbose_name_plural = _("times in a stage")
        # On PostgreSQL span_stage_left and span_shipped also carry the columns the statistics
        # read (migration 0012), so that those read a window of spans from the index alone.
        indexes = [
            models.Index(fields=["order"], name="span_order"),
            models.Index(fields=["stage", "left_at"], name="span_stage_left"),
            models.Index(
                fields=["production_site", "stage", "left_at"], name="span_site_stage_left"
            ),
            models.Index(fields=["carrier", "left_at"], name="span_carrier_left"),
            models.Index(fields=["shipped_at"], name="span_shipped"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.stage} {self.duration_s}"


class StatKind(models.TextChoices):
    STAGE = "stage", "Time in stage, per production site"
    SHIPMENT = "shipment", "Shipment to delivery, per carrier"
    TO_SHIP = "to_ship", "Stage entry to shipment (predictions)"


class StageStat(models.Model):
    """Median and p90 of one group of spans over a window, as the last refresh found them.

    `group` is the production site (stage, to_ship) or the carrier (shipment); empty means all.
    `issuer` is set only for the issuer-specific to_ship figures.
    """

    kind = models.CharField(max_length=16, choices=StatKind, verbose_name=_("kind"))
    window_days = models.PositiveSmallIntegerField(verbose_name=_("window days"))
    group = models.CharField(max_length=255, blank=True, verbose_name=_("group"))
    issuer = models.ForeignKey(
        "tracking.Issuer",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("issuer"),
    )
    stage = models.CharField(max_length=64, verbose_name=_("stage"))
    count = models.PositiveIntegerField(verbose_name=_("count"))
    p50_s = models.FloatField(verbose_name=_("p50 s"))
    p90_s = models.FloatField(verbose_name=_("p90 s"))
    computed_at = models.DateTimeField(default=timezone.now, verbose_name=_("computed at"))

    class Meta:
        verbose_name = _("stage figure")
        verbose_name_plural = _("stage figures")
        indexes = [models.Index(fields=["kind", "window_days"], name="stat_kind_window")]

    def __str__(self) -> str:
        return f"{self.kind} {self.window_days}d {self.group or 'all'} {self.stage}"


class ProductionFile(models.Model):
    """One (issuer, inputFileName) with its figures, as the last refresh found them."""

    issuer = models.ForeignKey(
        "tracking.Issuer", on_delete=models.CASCADE, related_name="+", verbose_name=_("issuer")
    )
    name = models.CharField(max_length=255, verbose_name=_("name"))
    orders = models.PositiveIntegerField(default=0, verbose_name=_("orders"))
    stage_counts = models.JSONField(default=dict, blank=True, verbose_name=_("stage counts"))
    shipped = models.PositiveIntegerField(default=0, verbose_name=_("shipped"))
    finished = models.PositiveIntegerField(default=0, verbose_name=_("finished"))
    exceptions = models.PositiveIntegerField(default=0, verbose_name=_("exceptions"))
    cancelled = models.PositiveIntegerField(default=0, verbose_name=_("cancelled"))
    share_finished = models.FloatField(default=0.0, verbose_name=_("share finished"))
    first_event_at = models.DateTimeField(null=True, blank=True, verbose_name=_("first event at"))
    last_event_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last event at"))
    # The latest predicted ship date of its open orders (p50 and p90), how many of them have a
    # prediction and how many of those are likely late: written with the predictions.
    predicted_p50 = models.DateField(null=True, blank=True, verbose_name=_("predicted p50"))
    predicted_p90 = models.DateField(null=True, blank=True, verbose_name=_("predicted p90"))
    predicted_orders = models.PositiveIntegerField(
        default=0, db_default=0, verbose_name=_("predicted orders")
    )
    likely_late_orders = models.PositiveIntegerField(
        default=0, db_default=0, verbose_name=_("likely late orders")
    )
    refreshed_at = models.DateTimeField(default=timezone.now, verbose_name=_("refreshed at"))

    class Meta:
        verbose_name = _("production file")
        verbose_name_plural = _("production files")
        ordering = ["-first_event_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "name"], name="file_unique_per_issuer")
        ]
        indexes = [
            models.Index(fields=["-first_event_at"], name="file_recent"),
            models.Index(fields=["share_finished"], name="file_share_finished"),
        ]

    def __str__(self) -> str:
        return self.name


class OrderPrediction(models.Model):
    """The predicted CARD_SHIPPED date of one open order (p50 and p90) and what it rests on."""

    order = models.OneToOneField(
        "tracking.CardOrder",
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="prediction",
        verbose_name=_("order"),
    )
    p50 = models.DateField(verbose_name=_("p50"))
    p90 = models.DateField(verbose_name=_("p90"))
    # Which history it comes from: issuer_site, site or all (sites).
    basis = models.CharField(max_length=16, verbose_name=_("basis"))
    stage = models.CharField(max_length=64, verbose_name=_("stage"))
    likely_late = models.BooleanField(default=False, verbose_name=_("likely late"))
    # When these values were last written (a refresh rewrites only predictions that changed).
    computed_at = models.DateTimeField(default=timezone.now, verbose_name=_("computed at"))

    class Meta:
        verbose_name = _("ship-date prediction")
        verbose_name_plural = _("ship-date predictions")
        indexes = [
            models.Index(fields=["p50"], name="prediction_p50"),
            models.Index(fields=["p50"], name="prediction_late", condition=Q(likely_late=True)),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.p50}..{self.p90}"


class RollupState(models.Model):
    """Where the incremental refresh stopped, and how long the last one took."""

    name = models.CharField(max_length=32, unique=True, verbose_name=_("name"))
    watermark = models.DateTimeField(null=True, blank=True, verbose_name=_("watermark"))
    refreshed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("refreshed at"))
    seconds = models.FloatField(default=0.0, verbose_name=_("seconds"))

    class Meta:
        verbose_name = _("insight refresh state")
        verbose_name_plural = _("insight refresh states")

    def __str__(self) -> str:
        return self.name
