"""The read API: card orders and their timelines, for integrations and for checking from outside."""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.pagination import CursorPagination

from tracking.api.filters import CardOrderFilter
from tracking.api.serializers import CardOrderDetailSerializer, CardOrderSerializer
from tracking.models import CardOrder


class OrderCursorPagination(CursorPagination):
    # Keyset paging on the primary key: constant time at any depth, stable while rows arrive.
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class CardOrderViewSet(viewsets.ReadOnlyModelViewSet):
    """Card orders with their derived state; the detail adds the events in timeline order."""

    queryset = CardOrder.objects.select_related("issuer", "prediction")
    filterset_class = CardOrderFilter
    pagination_class = OrderCursorPagination

    def get_serializer_class(self):
        return CardOrderDetailSerializer if self.action == "retrieve" else CardOrderSerializer
