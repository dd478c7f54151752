"""Filters of the read API's order list."""

from __future__ import annotations

import django_filters
from rest_framework.exceptions import PermissionDenied

from tracking.domain.masking import can_see_personal, personal_fields
from tracking.models import CardOrder


class CardOrderFilter(django_filters.FilterSet):
    issuer_id = django_filters.CharFilter(field_name="issuer__issuer_id")
    card_id = django_filters.CharFilter()
    operation_id = django_filters.CharFilter()
    issuer_request_id = django_filters.CharFilter()
    input_file_name = django_filters.CharFilter()
    tracking_number = django_filters.CharFilter()
    production_status = django_filters.CharFilter()
    operation_status = django_filters.CharFilter()
    needs_reconcile = django_filters.BooleanFilter()
    is_terminal = django_filters.BooleanFilter()

    class Meta:
        model = CardOrder
        fields: list[str] = []

    def filter_queryset(self, queryset):
        # Filtering on a personal field would confirm a guess of the masked value: 403 for
        # readers without the personal-data permission, whatever the value.
        if not can_see_personal(getattr(self.request, "user", None)):
            personal = personal_fields(CardOrder)
            for name, value in self.form.cleaned_data.items():
                if value not in (None, "") and self.filters[name].field_name in personal:
                    raise PermissionDenied(
                        f"Filtering by {name} needs the permission to see personal fields."
                    )
        return super().filter_queryset(queryset)
