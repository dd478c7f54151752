"""Insight rollups: stage spans per order, stage statistics, production files, predictions.

All of it is derived from `CardOrder` columns by `tracking.services.insight` (a beat task keeps it
fresh); nothing here is evidence, and any of it can be rebuilt at any time.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class StageSpan(models.Model):
    """How long one order spent in one stage, and how long it took from there to shipment.

    One row per stage of the PRODUCE path the order entered and has left (or, for a shipped
    order, from which it shipped). For CARD_SHIPPED, `left_at` is when the carrier reported
    delivery: the row is the shipment time of its carrier.
    """

    order = models.ForeignKey("tracking.CardOrder", on_delete=models.CASCADE, related_name="+")
    issuer = models.ForeignKey("tracking.Issuer", on_delete=models.CASCADE, related_name="+")
    production_site = models.CharField(max_length=255, blank=True)
    carrier = models.CharField(max_length=64, blank=True)
    stage = models.CharField(max_length=64)
    entered_at = models.DateTimeField()
    # When the next stage of the path began (null while in the stage, or when it was skipped).
    left_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    # When the order shipped, and the time from entering this stage to shipment.
    shipped_at = models.DateTimeField(null=True, blank=True)
    to_ship_s = models.FloatField(null=True, blank=True)

    class Meta:
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

    kind = models.CharField(max_length=16, choices=StatKind)
    window_days = models.PositiveSmallIntegerField()
    group = models.CharField(max_length=255, blank=True)
    issuer = models.ForeignKey(
        "tracking.Issuer", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    stage = models.CharField(max_length=64)
    count = models.PositiveIntegerField()
    p50_s = models.FloatField()
    p90_s = models.FloatField()
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["kind", "window_days"], name="stat_kind_window")]

    def __str__(self) -> str:
        return f"{self.kind} {self.window_days}d {self.group or 'all'} {self.stage}"


class ProductionFile(models.Model):
    """One (issuer, inputFileName) with its figures, as the last refresh found them."""

    issuer = models.ForeignKey("tracking.Issuer", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=255)
    orders = models.PositiveIntegerField(default=0)
    stage_counts = models.JSONField(default=dict, blank=True)
    shipped = models.PositiveIntegerField(default=0)
    finished = models.PositiveIntegerField(default=0)
    exceptions = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    share_finished = models.FloatField(default=0.0)
    first_event_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # The latest predicted ship date of its open orders (p50 and p90), how many of them have a
    # prediction and how many of those are likely late: written with the predictions.
    predicted_p50 = models.DateField(null=True, blank=True)
    predicted_p90 = models.DateField(null=True, blank=True)
    predicted_orders = models.PositiveIntegerField(default=0, db_default=0)
    likely_late_orders = models.PositiveIntegerField(default=0, db_default=0)
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
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
        "tracking.CardOrder", primary_key=True, on_delete=models.CASCADE, related_name="prediction"
    )
    p50 = models.DateField()
    p90 = models.DateField()
    # Which history it comes from: issuer_site, site or all (sites).
    basis = models.CharField(max_length=16)
    stage = models.CharField(max_length=64)
    likely_late = models.BooleanField(default=False)
    # When these values were last written (a refresh rewrites only predictions that changed).
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["p50"], name="prediction_p50"),
            models.Index(fields=["p50"], name="prediction_late", condition=Q(likely_late=True)),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.p50}..{self.p90}"


class RollupState(models.Model):
    """Where the incremental refresh stopped, and how long the last one took."""

    name = models.CharField(max_length=32, unique=True)
    watermark = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return self.name
