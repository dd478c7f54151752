"""The pull feed, `GET /api/v1/events/?after=<cursor>`: the issuers' card-order events in order.

For systems that cannot receive webhooks. Each page lists events after the cursor, oldest
first, and `next` is the cursor to ask with next time (the same one when nothing was new), so
a reader that stores `next` after handling a page never misses an event
(`tracking.outbound.feed` says why the order never skips one on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracking.domain.masking import can_see_personal, personal_fields, personal_mask
from tracking.models import CardOrder
from tracking.models.outbound import OutboundEvent
from tracking.outbound.feed import BadCursor, FeedPosition, feed_page
from tracking.selectors.order_representation import CardOrderSerializer
from tracking.services.issuer_grants import visible_to


def events_within_grant(user, *, token: Any = None) -> QuerySet[OutboundEvent]:
    """The events `user` (through `token`, a read-API token narrowed to some issuers) may read:
    those of the issuers granted (`tracking.services.issuer_grants`)."""
    return visible_to(user, OutboundEvent.objects.all(), path="issuer", token=token)


def order_masked(order: dict) -> dict:
    """The event's order as a reader without the personal-data permission sees it in the read
    API: the personal fields of PERSONAL_FIELDS masked, the shipment's one by one."""
    personal = personal_fields(CardOrder)
    shown = {
        name: personal_mask(value) if name in personal and name != "shipment" else value
        for name, value in order.items()
    }
    if isinstance(shown.get("shipment"), dict):
        shown["shipment"] = {
            key: personal_mask(value)
            if CardOrderSerializer.SHIPMENT_SOURCES.get(key) in personal
            else value
            for key, value in shown["shipment"].items()
        }
    return shown


class OutboundEventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="event_id")
    timestamp = serializers.DateTimeField(source="created_at")
    issuer_id = serializers.CharField(source="issuer.issuer_id")
    data = serializers.JSONField(source="payload")

    class Meta:
        model = OutboundEvent
        fields = ["id", "type", "timestamp", "issuer_id", "data"]

    def to_representation(self, instance):
        shown = super().to_representation(instance)
        request = self.context.get("request")
        order = shown["data"].get("order")
        if isinstance(order, dict) and not (request and can_see_personal(request.user)):
            shown["data"] = {**shown["data"], "order": order_masked(order)}
        return shown


class EventFeedView(APIView):
    """Card-order events after a cursor, in feed order."""

    queryset = OutboundEvent.objects.none()  # for the model permission (view_outboundevent)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", str, description="The `next` of the previous page."),
            OpenApiParameter("issuer_id", str, description="Only this issuer's events."),
            OpenApiParameter("limit", int, description="Events per page (at most 1000)."),
        ],
        responses=inline_serializer(
            "EventFeedPage",
            {
                "events": OutboundEventSerializer(many=True),
                "next": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        after = None
        if request.query_params.get("after"):
            try:
                after = FeedPosition.parse(request.query_params["after"])
            except BadCursor as exc:
                raise ValidationError({"after": ["Not a cursor this feed gave out."]}) from exc
        limit_text = request.query_params.get("limit") or str(settings.EVENT_FEED_PAGE_SIZE)
        if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= 1000):
            raise ValidationError({"limit": ["A whole number from 1 to 1000."]})
        events = events_within_grant(request.user, token=request.auth).select_related("issuer")
        if request.query_params.get("issuer_id"):
            events = events.filter(issuer__issuer_id=request.query_params["issuer_id"])
        page, position = feed_page(events, after=after, limit=int(limit_text))
        return Response(
            {
                "events": OutboundEventSerializer(
                    page, many=True, context={"request": request}
                ).data,
                "next": str(position) if position is not None else None,
            }
        )
