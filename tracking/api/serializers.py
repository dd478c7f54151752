"""Read-API representations of card orders and their events (snake_case, stable field set)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tracking.models import CardOrder, OperationEvent


class ShipmentSerializer(serializers.Serializer):
    carrier = serializers.CharField()
    tracking_number = serializers.CharField()
    tracking_url = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()


class OperationEventSerializer(serializers.ModelSerializer):
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


class CardOrderSerializer(serializers.ModelSerializer):
    issuer_id = serializers.CharField(source="issuer.issuer_id")
    shipment = serializers.SerializerMethodField()

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
            "missing_steps",
            "stage_entered_at",
            "first_event_at",
            "last_event_at",
            "updated_at",
        ]

    @extend_schema_field(ShipmentSerializer(allow_null=True))
    def get_shipment(self, order: CardOrder) -> dict | None:
        if not order.shipment:
            return None
        return {
            "carrier": order.carrier,
            "tracking_number": order.tracking_number,
            "tracking_url": order.tracking_url,
            "status": order.shipment_status,
            "message": order.shipment_message,
        }


class CardOrderDetailSerializer(CardOrderSerializer):
    events = serializers.SerializerMethodField()

    class Meta(CardOrderSerializer.Meta):
        fields = [*CardOrderSerializer.Meta.fields, "events"]

    @extend_schema_field(OperationEventSerializer(many=True))
    def get_events(self, order: CardOrder) -> list[dict]:
        return OperationEventSerializer(order.timeline(), many=True).data
