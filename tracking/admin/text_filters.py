"""Free-text filters of the orders list: a box in the filter panel for a part of a card id or a
file's exact name."""

from __future__ import annotations

from collections.abc import Iterator

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from unfold.widgets import INPUT_CLASSES


class TextFilter(admin.SimpleListFilter):
    """A free-text filter: a box in the filter panel, `lookup` applied to what was typed."""

    template = "unfold/filters/filters_field.html"
    label = ""  # the box's label
    lookup = ""  # the queryset lookup the value is given to

    def lookups(self, request, model_admin):
        return ()

    def has_output(self) -> bool:
        return True

    def choices(self, changelist) -> Iterator[dict]:
        yield {"form": TextFilterForm(self.parameter_name, self.label, self.value())}

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        return queryset.filter(**{self.lookup: value}) if value else queryset


class CardIdContainsFilter(TextFilter):
    """Part of a card id, case-insensitive: the search's fallback when no id matched exactly.

    A substring match scans every order, so it is offered, never done on its own.
    """

    title = _("card id contains")
    parameter_name = "card_contains"
    label = _("Card id contains")
    lookup = "card_id__icontains"


class InputFileFilter(TextFilter):
    """The orders of one input file, by its exact name (the file page's "orders" link)."""

    title = _("input file")
    parameter_name = "input_file_name"
    label = _("Input file (exact name)")
    lookup = "input_file_name"


class TextFilterForm(forms.Form):
    def __init__(self, name: str, label: str, value: str | None) -> None:
        super().__init__(data={name: value})
        self.fields[name] = forms.CharField(
            label=label,
            required=False,
            widget=forms.TextInput(attrs={"class": " ".join(INPUT_CLASSES)}),
        )
