"""Filters of the read API's order list."""

from __future__ import annotations

import django_filters

from tracking.models import CardOrder


class CardOrderFilter(django_filters.FilterSet):
    issuer_id = django_filters.CharFilter(field_name="issuer__issuer_id")
    card_id = django_filters.CharFilter()
    operation_id = django_filters.CharFilter()
    issuer_request_id = django_filters.CharFilter()
    tracking_number = django_filters.CharFilter()
    production_status = django_filters.CharFilter()
    operation_status = django_filters.CharFilter()
    needs_reconcile = django_filters.BooleanFilter()
    is_terminal = django_filters.BooleanFilter()

    class Meta:
        model = CardOrder
        fields: list[str] = []
