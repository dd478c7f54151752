"""The issuer's side kept for staff: registrations that disagreed with a stored order, and the
jobs that ask D1 about many orders at a pace D1 accepts.

A conflict is evidence (never edited); a job row is its own progress report, updated by the task
that walks its orders (`tracking.services.d1_asks`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RegistrationConflict(models.Model):
    """One field of a registration that disagreed with what the order already held.

    The order keeps its stored value; the registered one is kept here, with who sent it and how
    (the API, or the uploaded file by name), for staff to settle with the issuer.
    """

    order = models.ForeignKey(
        "tracking.CardOrder", on_delete=models.CASCADE, related_name="registration_conflicts"
    )
    field_name = models.CharField(_("field"), max_length=32)
    stored_value = models.CharField(_("stored value"), max_length=255, blank=True)
    registered_value = models.CharField(_("registered value"), max_length=255, blank=True)
    source = models.CharField(_("sent through"), max_length=255, blank=True)
    username = models.CharField(_("sent by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("registration conflict")
        verbose_name_plural = _("registration conflicts")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.field_name}: {self.stored_value!r} kept, {self.registered_value!r} refused"


class D1AskJobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Asking D1")
    DONE = "done", _("Done")


class D1AskJob(models.Model):
    """One "Ask D1 now" on many orders: capped, walked by one task under D1's rate limit."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(_("asked by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("asked at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=D1AskJobStatus.choices, default=D1AskJobStatus.QUEUED
    )
    # How many orders were selected; `total` is what the cap (D1_BULK_ASK_MAX) let through.
    selected = models.PositiveIntegerField(_("selected"), default=0)
    total = models.PositiveIntegerField(_("to ask"), default=0)
    done = models.PositiveIntegerField(_("asked"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    order_ids = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("ask-D1 job")
        verbose_name_plural = _("ask-D1 jobs")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Ask D1 #{self.pk}: {self.done + self.failed}/{self.total}"

    @property
    def walked(self) -> int:
        """Orders asked about so far, answered or failed."""
        return self.done + self.failed
