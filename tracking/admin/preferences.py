"""My preferences: the language and time zone each staff member reads the back office in.

Every staff member edits their own, and only their own, whatever their role: the page is
reached from the sidebar (`mine/`), which opens the signed-in user's row.
"""

from __future__ import annotations

from zoneinfo import available_timezones

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from tracking.admin.base import PortalModelAdmin
from tracking.models import StaffPreference
from tracking.services.preferences import preference_save, site_time_zone

# The zones people pick first, then every other one in the system's database.
_COMMON_ZONES = ["Asia/Tokyo", "UTC", "Europe/London", "Europe/Paris", "America/New_York"]


def _zone_choices() -> list[tuple[str, str]]:
    others = sorted(available_timezones() - set(_COMMON_ZONES) - {"localtime"})
    return [("", _("The site's zone")), *[(z, z) for z in _COMMON_ZONES + others]]


class StaffPreferenceForm(forms.ModelForm):
    time_zone = forms.TypedChoiceField(
        label=_("time zone"),
        choices=_zone_choices,
        required=False,
        help_text=_("Every time in the back office is shown in this zone. Empty: the site's zone."),
    )

    class Meta:
        model = StaffPreference
        fields = ["language", "time_zone"]

    list_display = ["__str__", "language", "time_zone"]


@admin.register(StaffPreference)
class StaffPreferenceAdmin(PortalModelAdmin):
    form = StaffPreferenceForm
    fields = ["language", "time_zone"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(user_id=request.user.pk)

    # Each staff member may read and change their own preferences, whatever their role.
    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        mine = obj is None or obj.user_id == request.user.pk
        return self.has_module_permission(request) and mine

    def has_change_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        mine = path(
            "mine/",
            self.admin_site.admin_view(self.mine_view),
            name="tracking_staffpreference_mine",
        )
        return [mine, *super().get_urls()]

    def mine_view(self, request):
        """The sidebar's link: the signed-in user's own preferences, made on first use."""
        mine, _created = StaffPreference.objects.get_or_create(user=request.user)
        return HttpResponseRedirect(
            reverse("admin:tracking_staffpreference_change", args=[mine.pk])
        )

    def save_model(self, request, obj, form, change):
        preference_save(
            user=request.user,
            language=obj.language,
            time_zone=obj.time_zone,
            request=request,
        )

    def response_change(self, request, obj):
        messages.success(request, _("Your language and time zone are saved."))
        return HttpResponseRedirect(request.path)

    def render_change_form(self, request, context, *args, **kwargs):
        context["subtitle"] = _("The site's zone for you now: %(zone)s") % {
            "zone": site_time_zone(request.LANGUAGE_CODE)
        }
        return super().render_change_form(request, context, *args, **kwargs)
