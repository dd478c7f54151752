"""Each staff member's language and time zone: kept in StaffPreference, carried in the session.

The session holds the choice from sign-in (`preference_remember`), so a page costs no query for
it; saving the preferences page updates the session at once. `language_and_zone` says what a
request uses, the middleware applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import translation

from tracking.models import StaffPreference

SESSION_KEY = "portal_preference"


@dataclass(frozen=True)
class Chosen:
    """What the user chose; "" where they left it to the browser or the site."""

    language: str = ""
    time_zone: str = ""


def preference_of(user) -> Chosen:
    """The user's saved choice (one query), or nothing chosen."""
    found = StaffPreference.objects.filter(user_id=user.pk).values("language", "time_zone").first()
    return Chosen(**found) if found else Chosen()


def preference_save(*, user, language: str, time_zone: str, request: HttpRequest | None) -> None:
    """Store the user's choice and, for their own request, apply it to the session at once."""
    StaffPreference.objects.update_or_create(
        user=user, defaults={"language": language, "time_zone": time_zone}
    )
    if request is not None and request.user.pk == user.pk:
        _keep_in_session(request, Chosen(language=language, time_zone=time_zone))


def _keep_in_session(request: HttpRequest, chosen: Chosen) -> None:
    request.session[SESSION_KEY] = {"language": chosen.language, "time_zone": chosen.time_zone}


@receiver(user_logged_in, dispatch_uid="tracking-preference-remember")
def preference_remember(sender, request, user, **kwargs) -> None:
    """At sign-in, carry the user's choice in their session."""
    if request is not None and hasattr(request, "session"):
        _keep_in_session(request, preference_of(user))


def chosen_in(request: HttpRequest) -> Chosen:
    session = getattr(request, "session", None)
    kept = session.get(SESSION_KEY) if session is not None else None
    if not kept:
        return Chosen()
    return Chosen(language=kept.get("language", ""), time_zone=kept.get("time_zone", ""))


def site_time_zone(language: str) -> str:
    """The zone of a user who chose none: PORTAL_TIME_ZONE, else their language's, else UTC's."""
    if settings.PORTAL_TIME_ZONE:
        return settings.PORTAL_TIME_ZONE
    base = translation.get_supported_language_variant(language or settings.LANGUAGE_CODE)
    return settings.PORTAL_LANGUAGE_TIME_ZONES.get(base.split("-")[0], settings.TIME_ZONE)


def language_and_zone(request: HttpRequest) -> tuple[str, ZoneInfo]:
    """The language (the user's, else the one LocaleMiddleware took from the browser) and zone."""
    chosen = chosen_in(request)
    language = chosen.language or getattr(request, "LANGUAGE_CODE", "") or settings.LANGUAGE_CODE
    zone = chosen.time_zone or site_time_zone(language)
    try:
        return language, ZoneInfo(zone)
    except (ValueError, KeyError, OSError):
        # A zone removed from the system's database since it was chosen: the site's instead.
        return language, ZoneInfo(site_time_zone(language))
