"""Intake's own tables: copies of stored items, appended by the webhook, counted later."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class EventCopy(models.Model):
    """Copies of a stored event that a delivery repeated, not counted into the event yet.

    Append-only: the webhook inserts a row (no lock on the event, no fold), the projector
    (`tracking.intake.projector`) deletes it as it adds `copies` to the event's
    `times_received`, in one transaction, so each copy is counted once.
    """

    # Not a foreign key: appending takes no lock on the event's row.
    event_id = models.BigIntegerField(_("event"))
    copies = models.PositiveIntegerField(_("copies"), default=1)
    received_at = models.DateTimeField(_("received"))

    class Meta:
        verbose_name = _("copy waiting to be counted")
        verbose_name_plural = _("copies waiting to be counted")
        indexes = [models.Index(fields=["event_id"], name="event_copy_event")]

    def __str__(self) -> str:
        return f"{self.copies} copies of event {self.event_id}"
