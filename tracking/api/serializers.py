"""Read-API representations of an order's events and explanation, and the order's detail.

The order itself is shown as `tracking.selectors.order_representation` represents it, the
representation the outbound events carry too.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tracking.models import CardOrder, OperationEvent
from tracking.selectors.explanation import order_explanation
from tracking.selectors.order_representation import CardOrderSerializer, PersonalFieldsMaskMixin
from tracking.selectors.order_timeline import order_timeline


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
        """Which rule and event decided each field (`tracking.domain.fold`, as the fold
        decided)."""
        return [row.as_dict() for row in order_explanation(order)]

    @extend_schema_field(OperationEventSerializer(many=True))
    def get_events(self, order: CardOrder) -> list[dict]:
        return OperationEventSerializer(order_timeline(order), many=True, context=self.context).data
