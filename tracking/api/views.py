"""The read API: card orders and their timelines, for integrations and for checking from outside."""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from tracking.api.filters import CardOrderFilter
from tracking.api.registration import OrderRegistrationMixin
from tracking.api.serializers import CardOrderDetailSerializer
from tracking.models import CardOrder
from tracking.selectors.order_representation import CardOrderSerializer
from tracking.services.issuer_grants import orders_visible_to


class OrderCursorPagination(CursorPagination):
    # Keyset paging on the primary key: constant time at any depth, stable while rows arrive.
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request):
        """The cursor, or 400 when it was not made here (DRF answers 404, or 500 on a position
        that is not a number)."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]}) from exc
        if cursor is not None and cursor.position is not None:
            position = cursor.position
            # One optional sign and digits only: "--1" would pass a strip and fail int() (500).
            digits = position.removeprefix("-")
            if not (digits.isascii() and digits.isdigit() and len(position) < 20):
                raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})
        return cursor


class CardOrderViewSet(OrderRegistrationMixin, viewsets.ReadOnlyModelViewSet):
    """Card orders with their derived state; the detail adds the events in timeline order.

    POST registers orders the issuer placed (`tracking.api.registration`).
    """

    queryset = CardOrder.objects.select_related("issuer", "prediction")
    filterset_class = CardOrderFilter
    pagination_class = OrderCursorPagination

    def get_queryset(self):
        # The orders of the issuers the user is granted, narrowed to its token's issuers:
        # any other order answers 404, as a missing one does.
        return orders_visible_to(self.request.user, super().get_queryset(), token=self.request.auth)

    def get_serializer_class(self):
        return CardOrderDetailSerializer if self.action == "retrieve" else CardOrderSerializer
