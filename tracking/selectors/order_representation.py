"""A card order as the read API shows it and as the outbound events carry it, and its summary.

One representation (`CardOrderSerializer`: snake_case, a stable field set) for both, so that an
issuer reads the same order in `GET /api/v1/orders/`, in the pull feed and in a webhook event.
`awaiting_first_event` and `state_summary` say in words where a registered order stands; the
issuer's pages in the admin read them too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tracking.domain import carrier_status
from tracking.domain.masking import can_see_personal, personal_fields, personal_mask
from tracking.insight.predictions import order_forecast
from tracking.models import CardOrder


def awaiting_first_event(order: CardOrder) -> bool:
    """A registered order D1 has said nothing about yet."""
    return order.registered_at is not None and not order.event_count


def state_summary(order: CardOrder) -> str:
    """The order's state in one sentence, plain about what the portal does not know yet."""
    if order.superseded_by_id:
        return f"Superseded by a newer operation of the same card (order {order.superseded_by_id})."
    if awaiting_first_event(order):
        since = order.registered_at.strftime("%Y-%m-%d %H:%M UTC")
        text = f"Registered by the issuer on {since}; no events from D1 yet."
        if order.d1_not_found_since is not None:
            text += " D1 does not know the card yet (404)."
        return text
    if not order.production_status:
        return "Only codes the portal does not know so far."
    status = order.production_status
    if order.shipment_status:
        status += f", carrier: {order.shipment_status}"
    return f"{status} (from D1)."


class PersonalFieldsMaskMixin:
    """Mask the fields PERSONAL_FIELDS marks for readers without the personal-data permission."""

    # API field -> model field, where the names differ.
    personal_sources: dict[str, str] = {}

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is None or can_see_personal(request.user):
            return data
        personal = personal_fields(self.Meta.model)
        for name in list(data):
            if self.personal_sources.get(name, name) in personal:
                data[name] = personal_mask(data[name])
        return data


class ShipmentSerializer(serializers.Serializer):
    carrier = serializers.CharField()
    tracking_number = serializers.CharField()
    tracking_url = serializers.CharField()
    status = serializers.CharField(help_text="The carrier's status exactly as D1 sent it.")
    normalized_status = serializers.ChoiceField(
        choices=list(carrier_status.CLASSES),
        help_text=(
            "The carrier status's class, whatever word and casing the carrier used; "
            "`unknown` for a word the portal does not know (shown as sent in `status`)."
        ),
    )
    message = serializers.CharField()


class CardOrderSerializer(PersonalFieldsMaskMixin, serializers.ModelSerializer):
    issuer_id = serializers.CharField(source="issuer.issuer_id")
    shipment = serializers.SerializerMethodField()
    # The issuer's side: a registered order D1 has not spoken about says so plainly.
    awaiting_first_event = serializers.SerializerMethodField()
    state_summary = serializers.SerializerMethodField()
    predicted_ship_date = serializers.SerializerMethodField()
    predicted_ship_range = serializers.SerializerMethodField()
    # The list reads the stored predictions; the detail predicts an order that moved on since.
    live_forecast = False
    # The API's shipment is built from the columns, each masked on its own (SHIPMENT_SOURCES).
    personal_sources = {"shipment": ""}

    class Meta:
        model = CardOrder
        fields = [
            "id",
            "issuer_id",
            "card_id",
            "operation_id",
            "operation",
            "operation_status",
            "production_status",
            "is_terminal",
            "start_time",
            "end_time",
            "issuer_request_id",
            "input_file_name",
            "production_site",
            "due_date",
            "reason",
            "error_code",
            "error",
            "shipment",
            "needs_reconcile",
            "reconcile_reason",
            "event_count",
            "tracking_type",
            "has_conflict",
            "has_unknown_status",
            "has_gap",
            "unknown_codes",
            "hold_code",
            "hold_reason",
            "missing_steps",
            "rules_version",
            "stage_entered_at",
            "first_event_at",
            "last_event_at",
            "updated_at",
            "registered_at",
            "awaiting_first_event",
            "state_summary",
            "exception_reason",
            "superseded_by",
            "change_type",
            "change_result",
            "predicted_ship_date",
            "predicted_ship_range",
        ]

    def get_awaiting_first_event(self, order: CardOrder) -> bool:
        return awaiting_first_event(order)

    def get_state_summary(self, order: CardOrder) -> str:
        return state_summary(order)

    def _forecast(self, order: CardOrder):
        if not hasattr(order, "_api_forecast"):
            order._api_forecast = order_forecast(order, live=self.live_forecast)
        return order._api_forecast

    @extend_schema_field(serializers.DateField(allow_null=True))
    def get_predicted_ship_date(self, order: CardOrder) -> str | None:
        """The p50 predicted CARD_SHIPPED date; null when shipped, final or without history."""
        forecast = self._forecast(order)
        return forecast.p50.isoformat() if forecast else None

    @extend_schema_field(
        serializers.ListField(
            child=serializers.DateField(), min_length=2, max_length=2, allow_null=True
        )
    )
    def get_predicted_ship_range(self, order: CardOrder) -> list[str] | None:
        """[p50, p90] predicted CARD_SHIPPED dates, or null."""
        forecast = self._forecast(order)
        return [forecast.p50.isoformat(), forecast.p90.isoformat()] if forecast else None

    @extend_schema_field(ShipmentSerializer(allow_null=True))
    def get_shipment(self, order: CardOrder) -> dict | None:
        if not order.shipment:
            return None
        shipment = {
            "carrier": order.carrier,
            "tracking_number": order.tracking_number,
            "tracking_url": order.tracking_url,
            "status": order.shipment_status,
            "normalized_status": order.shipment_class,
            "message": order.shipment_message,
        }
        request = self.context.get("request")
        if request is not None and not can_see_personal(request.user):
            personal = personal_fields(CardOrder)
            for key, model_field in self.SHIPMENT_SOURCES.items():
                if model_field in personal:
                    shipment[key] = personal_mask(shipment[key])
        return shipment

    SHIPMENT_SOURCES = {
        "carrier": "carrier",
        "tracking_number": "tracking_number",
        "tracking_url": "tracking_url",
        "status": "shipment_status",
        "message": "shipment_message",
    }


@functools.cache
def _event_serializer() -> CardOrderSerializer:
    """The serializer made once: building its fields is most of its cost."""
    return CardOrderSerializer()


def order_representations(orders: Sequence[CardOrder]) -> list[dict]:
    """Each order as an outbound event carries it: the read API's representation, unmasked.

    Without a request it masks nothing: the events go to the issuer's own systems (the pull
    feed masks for its readers, `tracking.api.events`). Dates and times are text already.
    """
    serializer = _event_serializer()
    return [dict(serializer.to_representation(order)) for order in orders]
