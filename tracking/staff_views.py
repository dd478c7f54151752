"""Staff pages outside the admin: the second step of a two-factor login."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse, reverse_lazy
from django_otp import user_has_device
from django_otp.views import LoginView


class OTPVerifyView(LoginView):
    """Ask a signed-in staff member for a TOTP code; the session counts as verified after it."""

    template_name = "tracking/otp_verify.html"
    next_page = reverse_lazy("admin:index")

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["has_device"] = user_has_device(self.request.user)
        return context
