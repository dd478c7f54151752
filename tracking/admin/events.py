"""Outbound events: the issuers' endpoints (add, rotate the secret, replay), their deliveries,
and the events themselves; the order page lists its order's events (`order_events_context`)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from tracking.admin import display as admin_display
from tracking.admin.base import EvidenceAdmin, PortalModelAdmin
from tracking.models import Issuer
from tracking.models.outbound import (
    EVENT_TYPES,
    DeliveryAttempt,
    DeliveryStatus,
    EventDelivery,
    EventEndpoint,
    OutboundEvent,
)
from tracking.outbound.addresses import AddressRefused, addresses_resolve
from tracking.services.audit import Actor, audit_actor
from tracking.services.event_endpoints import (
    endpoint_create,
    endpoint_secret_rotate,
    events_replay,
)
from tracking.services.issuer_grants import visible_to


def endpoints_within_grant(request: HttpRequest, endpoints: QuerySet) -> QuerySet:
    """The endpoints (or issuers) `request`'s user may manage: those of the issuers the user is
    granted (`tracking.services.issuer_grants`); another issuer's are as if they did not exist."""
    path = "" if endpoints.model is Issuer else "issuer"
    return visible_to(request.user, endpoints, path=path)


class EventEndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        label=gettext_lazy("event types"),
        choices=[(t, t) for t in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("None chosen: every type."),
    )

    class Meta:
        model = EventEndpoint
        fields = ["issuer", "url", "description", "event_types", "enabled"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            addresses_resolve(url)
        except AddressRefused as exc:
            raise ValidationError(str(exc)) from exc
        return url


@admin.register(EventEndpoint)
class EventEndpointAdmin(PortalModelAdmin):
    issuer_path = "issuer"
    """An issuer system's address for card-order events; the secret is shown once."""

    form = EventEndpointForm
    list_display = [
        "url",
        "issuer",
        "enabled_badge",
        "types",
        "failing_since",
        "deliveries_link",
    ]
    list_filter = ["enabled", "issuer"]
    list_select_related = ["issuer"]
    readonly_fields = ["failing_since", "disabled_at", "disabled_reason", "secret_note"]

    def get_queryset(self, request):
        return endpoints_within_grant(request, super().get_queryset(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "issuer":
            kwargs["queryset"] = endpoints_within_grant(request, Issuer.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        fields = ["issuer", "url", "description", "event_types", "enabled"]
        if obj is not None:
            fields += ["secret_note", "failing_since", "disabled_at", "disabled_reason"]
        return fields

    def get_readonly_fields(self, request, obj=None):
        # The issuer of an endpoint stays: its secret and deliveries belong to that issuer.
        return [*self.readonly_fields, "issuer"] if obj is not None else self.readonly_fields

    @admin.display(description=gettext_lazy("enabled"), ordering="enabled")
    def enabled_badge(self, endpoint: EventEndpoint) -> str:
        if endpoint.enabled:
            return admin_display.badge(_("Enabled"), "success")
        if endpoint.disabled_at:
            return admin_display.badge(_("Disabled: kept failing"), "danger")
        return admin_display.badge(_("Disabled"), "neutral")

    @admin.display(description=gettext_lazy("types"))
    def types(self, endpoint: EventEndpoint) -> str:
        return ", ".join(endpoint.event_types) or _("all")

    @admin.display(description=gettext_lazy("deliveries"))
    def deliveries_link(self, endpoint: EventEndpoint) -> str:
        url = reverse("admin:tracking_eventdelivery_changelist")
        return format_html(
            '<a class="bo-link" href="{}?endpoint__id__exact={}">{}</a>',
            url,
            endpoint.pk,
            _("Show"),
        )

    @admin.display(description=gettext_lazy("signing secret"))
    def secret_note(self, endpoint: EventEndpoint) -> str:
        rotate = reverse("admin:tracking_eventendpoint_rotate", args=[endpoint.pk])
        replay = reverse("admin:tracking_eventendpoint_replay", args=[endpoint.pk])
        return format_html(
            '{} <a class="bo-link" href="{}">{}</a> · <a class="bo-link" href="{}">{}</a>',
            _("Shown once when made; never again."),
            rotate,
            _("Rotate the secret"),
            replay,
            _("Replay events"),
        )

    def save_model(self, request, obj, form, change) -> None:
        if change:
            if "enabled" in form.changed_data and obj.enabled:
                # Enabled again by staff: a fresh start, pending deliveries resume.
                obj.failing_since = obj.disabled_at = None
                obj.disabled_reason = ""
            super().save_model(request, obj, form, change)
            audit_actor(
                Actor.of_request(request),
                action="event_endpoint.change",
                targets=[obj],
                details={"changed": form.changed_data},
            )
            return
        made, secret = endpoint_create(
            issuer=form.cleaned_data["issuer"],
            url=form.cleaned_data["url"],
            event_types=form.cleaned_data["event_types"],
            description=form.cleaned_data["description"],
            actor=Actor.of_request(request),
        )
        if not form.cleaned_data["enabled"]:
            EventEndpoint.objects.filter(pk=made.pk).update(enabled=False)
        obj.pk = made.pk
        request._event_endpoint_secret = secret

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_event_endpoint_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, secret, title=_("Event endpoint added"))

    def _secret_page(self, request, endpoint, secret: str, *, title: str):
        # Rendered once, never stored: not in a message (cookie), not in the database.
        return TemplateResponse(
            request,
            "tracking/outbound/endpoint_secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": title,
                "endpoint": EventEndpoint.objects.get(pk=endpoint.pk),
                "secret": secret,
            },
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/rotate/",
                wrap(self.rotate_view),
                name="tracking_eventendpoint_rotate",
            ),
            path(
                "<path:object_id>/replay/",
                wrap(self.replay_view),
                name="tracking_eventendpoint_replay",
            ),
            *super().get_urls(),
        ]

    def _endpoint(self, request, object_id, permission: str) -> EventEndpoint:
        if not request.user.has_perm(f"tracking.{permission}_eventendpoint"):
            raise PermissionDenied
        return get_object_or_404(self.get_queryset(request), pk=object_id)

    def rotate_view(self, request, object_id):
        endpoint = self._endpoint(request, object_id, "rotate")
        if request.method == "POST":
            secret = endpoint_secret_rotate(endpoint=endpoint, actor=Actor.of_request(request))
            return self._secret_page(request, endpoint, secret, title=_("Secret rotated"))
        return TemplateResponse(
            request,
            "tracking/outbound/endpoint_action.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Rotate the signing secret"),
                "endpoint": endpoint,
                "action": "rotate",
            },
        )

    def replay_view(self, request, object_id):
        endpoint = self._endpoint(request, object_id, "replay")
        form = ReplayForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            event = None
            if form.cleaned_data["event_id"]:
                event = OutboundEvent.objects.filter(
                    event_id=form.cleaned_data["event_id"], issuer_id=endpoint.issuer_id
                ).first()
                if event is None:
                    form.add_error("event_id", _("No event of this issuer has this id."))
            if not form.errors:
                owed = events_replay(
                    endpoint=endpoint,
                    event=event,
                    since=None if event else form.cleaned_data["since"],
                    actor=Actor.of_request(request),
                )
                messages.success(request, _("%(n)d events queued again.") % {"n": len(owed)})
                url = reverse("admin:tracking_eventdelivery_changelist")
                return HttpResponseRedirect(f"{url}?endpoint__id__exact={endpoint.pk}")
        return TemplateResponse(
            request,
            "tracking/outbound/endpoint_action.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Replay events"),
                "endpoint": endpoint,
                "action": "replay",
                "form": form,
            },
        )


class ReplayForm(forms.Form):
    event_id = forms.CharField(
        label=gettext_lazy("One event (its id, evt_…)"), required=False, max_length=40
    )
    since = forms.DateTimeField(
        label=gettext_lazy("Or every event since (UTC, YYYY-MM-DD HH:MM)"), required=False
    )

    def clean(self):
        data = super().clean()
        if bool(data.get("event_id")) == bool(data.get("since")):
            raise ValidationError(_("Give one event id or a time, not both."))
        if data.get("since") and timezone.is_naive(data["since"]):
            data["since"] = data["since"].replace(tzinfo=dt.UTC)
        return data


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "status_code", "latency_ms", "response_start", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EventDelivery)
class EventDeliveryAdmin(EvidenceAdmin):
    issuer_path = "endpoint__issuer"
    """Each event owed to an endpoint: attempts, the latest answer, and what came back."""

    list_display = [
        "event_link",
        "event_type",
        "endpoint",
        "status_badge",
        "attempts",
        "last_status_code",
        "latency",
        "answer_start",
        "next_attempt_at",
    ]
    list_filter = ["status", "endpoint", "is_replay"]
    list_select_related = ["event", "endpoint"]
    inlines = [DeliveryAttemptInline]

    def get_queryset(self, request):
        endpoints = endpoints_within_grant(request, EventEndpoint.objects.all())
        return super().get_queryset(request).filter(endpoint__in=endpoints)

    @admin.display(description=gettext_lazy("event"))
    def event_link(self, delivery: EventDelivery) -> str:
        url = reverse("admin:tracking_outboundevent_change", args=[delivery.event_id])
        return format_html('<a class="bo-link" href="{}">{}</a>', url, delivery.event.event_id)

    @admin.display(description=gettext_lazy("type"))
    def event_type(self, delivery: EventDelivery) -> str:
        return delivery.event.type

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, delivery: EventDelivery) -> str:
        tone = {"delivered": "success", "gave_up": "danger"}.get(delivery.status, "warning")
        return admin_display.badge(delivery.get_status_display(), tone)

    def _last_try(self, delivery: EventDelivery):
        if not hasattr(delivery, "_last_try"):
            delivery._last_try = delivery.tries.order_by("-number").first()
        return delivery._last_try

    @admin.display(description=gettext_lazy("time to answer (ms)"))
    def latency(self, delivery: EventDelivery):
        last = self._last_try(delivery)
        return last.latency_ms if last else None

    @admin.display(description=gettext_lazy("answer's first bytes"))
    def answer_start(self, delivery: EventDelivery) -> str:
        last = self._last_try(delivery)
        if last is None:
            return ""
        return (last.response_start or last.error)[:120]


@admin.register(OutboundEvent)
class OutboundEventAdmin(EvidenceAdmin):
    issuer_path = "issuer"
    """The outbox: every card-order event, as sent (never edited)."""

    list_display = ["event_id", "type", "order", "sequence", "rederive", "created_at"]
    list_filter = ["type", "rederive", "issuer"]
    list_select_related = ["order"]
    search_fields = ["=event_id"]
    fields = [
        "event_id",
        "type",
        "issuer",
        "order",
        "sequence",
        "rederive",
        "created_at",
        "payload",
    ]


def order_events_context(order) -> dict:
    """The order page's list of the events sent about the order, newest first, with how their
    deliveries stand, in one query (templates/admin/tracking/includes/outbound_events.html)."""
    events = order.outbound_events.annotate(
        delivered=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.DELIVERED)),
        pending=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
        gave_up=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.GAVE_UP)),
    ).order_by("-sequence")[:20]
    return {"outbound_events": list(events)}
