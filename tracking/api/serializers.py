"""Read-API representations of card orders and their events (snake_case, stable field set)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tracking.domain import carrier_status
from tracking.domain.masking import can_see_personal, personal_fields, personal_mask
from tracking.insight.predictions import order_forecast
from tracking.models import CardOrder, OperationEvent
from tracking.selectors.explanation import order_explanation
from tracking.services.registration import awaiting_first_event, state_summary


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


class OperationEventSerializer(PersonalFieldsMaskMixin, serializers.ModelSerializer):
    received_at = serializers.DateTimeField(source="first_received_at")

    class Meta:
        model = OperationEvent
        fields = [
            "id",
            "source",
            "received_at",
            "last_received_at",
            "times_received",
            "operation",
            "operation_status",
            "production_status",
            "outcome",
            "validation_error",
            "payload",
        ]


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


class ExplanationSerializer(serializers.Serializer):
    field = serializers.CharField()
    value = serializers.JSONField()
    rule = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)


class CardOrderDetailSerializer(CardOrderSerializer):
    events = serializers.SerializerMethodField()
    explanation = serializers.SerializerMethodField()
    live_forecast = True

    class Meta(CardOrderSerializer.Meta):
        fields = [*CardOrderSerializer.Meta.fields, "events", "explanation"]

    @extend_schema_field(ExplanationSerializer(many=True))
    def get_explanation(self, order: CardOrder) -> list[dict]:
        """Which rule and event decided each field (`tracking.domain.rules`, as the fold
        decided)."""
        return [row.as_dict() for row in order_explanation(order)]

    @extend_schema_field(OperationEventSerializer(many=True))
    def get_events(self, order: CardOrder) -> list[dict]:
        return OperationEventSerializer(order.timeline(), many=True, context=self.context).data
