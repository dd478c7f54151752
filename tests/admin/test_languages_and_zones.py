"""Each user reads the back office in their language and their time zone.

The language is the user's choice (their preferences page), else the browser's Accept-Language,
else the site's; every time carries its zone, and date filters take the user's days.
"""

from __future__ import annotations

import csv
import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.admin.test_orders_list import listed_cards
from tests.fixtures.backoffice import Card, post_items
from tracking.models import CardOrder, StaffPreference

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/cardorder/"
PREFERENCES = "/admin/tracking/staffpreference/"
# 23:30 UTC on 4 December is 08:30 JST on 5 December.
LATE_EVENING_UTC = dt.datetime(2026, 12, 4, 23, 30, tzinfo=dt.UTC)


def staff(username: str, *, language: str = "", time_zone: str = "", **headers) -> Client:
    """A signed-in superuser with the given preferences and browser headers."""
    user = get_user_model().objects.create_superuser(username, f"{username}@example.com", "pw")
    if language or time_zone:
        StaffPreference.objects.create(user=user, language=language, time_zone=time_zone)
    client = Client(**headers)
    client.force_login(user)
    return client


@pytest.fixture
def late_order(issuer) -> CardOrder:
    card = Card("card-2330", "op-2330", "LATE.csv", "req-2330", start="2026-12-04T23:29:00.000Z")
    post_items(issuer, [card.item("CARD_PROD_REQUESTED")], LATE_EVENING_UTC)
    return CardOrder.objects.get(card_id="card-2330")


def text_of(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# ---------------------------------------------------------------------------- language


def test_a_japanese_browser_reads_japanese():
    client = staff("hanako", HTTP_ACCEPT_LANGUAGE="ja-JP,ja;q=0.9,en;q=0.5")
    response = client.get("/admin/")
    assert response["Content-Language"] == "ja"
    assert '<html lang="ja"' in response.content.decode()
    text = text_of(response)
    for words in ("ダッシュボード", "処理中の注文", "未対応の例外", "D1 への照会"):
        assert words in text, words


def test_an_english_browser_reads_english():
    client = staff("harry", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9")
    response = client.get("/admin/")
    assert response["Content-Language"] == "en"
    assert "Dashboard" in text_of(response)
    assert "ダッシュボード" not in text_of(response)


def test_the_users_choice_wins_over_the_browser():
    client = staff("jun", language="en", HTTP_ACCEPT_LANGUAGE="ja-JP,ja;q=0.9")
    response = client.get("/admin/")
    assert response["Content-Language"] == "en"
    assert "ダッシュボード" not in text_of(response)

    other = staff("emily", language="ja", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert other.get("/admin/")["Content-Language"] == "ja"


def test_without_a_choice_or_a_browser_language_the_site_language():
    response = staff("nobody").get("/admin/")
    assert response["Content-Language"] == "en"


def test_the_preferences_page_saves_and_applies_the_choice_at_once():
    client = staff("kenji", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    page = client.get(f"{PREFERENCES}mine/", follow=True)
    assert page.status_code == 200
    mine = StaffPreference.objects.get(user__username="kenji")
    response = client.post(
        f"{PREFERENCES}{mine.pk}/change/",
        {"language": "ja", "time_zone": "Asia/Tokyo"},
        follow=True,
    )
    assert response.status_code == 200
    mine.refresh_from_db()
    assert (mine.language, mine.time_zone) == ("ja", "Asia/Tokyo")
    assert response["Content-Language"] == "ja"
    # ... and on the next sign-in too.
    again = Client(HTTP_ACCEPT_LANGUAGE="en-US")
    again.force_login(mine.user)
    assert again.get("/admin/")["Content-Language"] == "ja"


def test_a_zone_that_does_not_exist_is_refused_with_the_reason():
    client = staff("kenji", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    client.get(f"{PREFERENCES}mine/")
    mine = StaffPreference.objects.get(user__username="kenji")
    response = client.post(
        f"{PREFERENCES}{mine.pk}/change/", {"language": "en", "time_zone": "Mars/Olympus"}
    )
    assert response.status_code == 200
    assert "Mars/Olympus" in text_of(response)
    mine.refresh_from_db()
    assert mine.time_zone == ""


def test_nobody_opens_someone_elses_preferences():
    owner = get_user_model().objects.create_user("owner", password="pw", is_staff=True)
    theirs = StaffPreference.objects.create(user=owner, language="ja")
    client = staff("curious", HTTP_ACCEPT_LANGUAGE="en")
    assert client.get(f"{PREFERENCES}{theirs.pk}/change/").status_code in (302, 403, 404)
    client.post(f"{PREFERENCES}{theirs.pk}/change/", {"language": "en", "time_zone": "UTC"})
    theirs.refresh_from_db()
    assert theirs.language == "ja"


# ---------------------------------------------------------------------------- time zones


def test_times_are_in_the_users_zone_with_the_zone_written(late_order):
    tokyo = staff("tokyo", language="en", time_zone="Asia/Tokyo")
    utc = staff("london", language="en", time_zone="UTC")
    page = f"{LIST}{late_order.pk}/change/"

    assert "5 Dec 2026 08:30 JST" in text_of(tokyo.get(page))
    assert "4 Dec 2026 23:30 UTC" in text_of(utc.get(page))
    assert "5 Dec 2026 08:30 JST" in text_of(tokyo.get(LIST))
    assert "4 Dec 2026 23:30 UTC" in text_of(utc.get(LIST))


def test_japanese_dates_are_written_the_japanese_way(late_order):
    tokyo = staff("tokyo", language="ja", time_zone="Asia/Tokyo")
    assert "2026年12月5日 08:30 JST" in text_of(tokyo.get(f"{LIST}{late_order.pk}/change/"))


def test_a_japanese_user_without_a_zone_sees_tokyo_time(late_order):
    hanako = staff("hanako", HTTP_ACCEPT_LANGUAGE="ja-JP,ja;q=0.9")
    assert "2026年12月5日 08:30 JST" in text_of(hanako.get(f"{LIST}{late_order.pk}/change/"))


def test_date_filters_take_the_users_day(late_order):
    """Received at 23:30 UTC on 4 December: 5 December in Tokyo, 4 December in London."""
    tokyo = staff("tokyo", language="en", time_zone="Asia/Tokyo")
    utc = staff("london", language="en", time_zone="UTC")
    for field in ("first_event_at", "updated_at"):
        fifth = {f"{field}_from": "2026-12-05", f"{field}_to": "2026-12-05"}
        fourth = {f"{field}_from": "2026-12-04", f"{field}_to": "2026-12-04"}
        assert listed_cards(tokyo.get(LIST, fifth)) == {"card-2330"}
        assert listed_cards(tokyo.get(LIST, fourth)) == set()
        assert listed_cards(utc.get(LIST, fourth)) == {"card-2330"}
        assert listed_cards(utc.get(LIST, fifth)) == set()


def test_the_dashboard_states_its_time_in_the_users_zone(late_order):
    tokyo = staff("tokyo", language="en", time_zone="Asia/Tokyo")
    text = text_of(tokyo.get("/admin/"))
    assert re.search(r"Figures as of \d{1,2} \w{3} \d{4} \d\d:\d\d JST", text), text[:2000]


def test_djangos_user_page_no_longer_says_you_are_hours_ahead():
    """Django's date widgets warn when the browser's offset differs from the page's; the page's
    offset is now the user's zone (+09:00 in Tokyo), so a Tokyo browser gets no warning."""
    tokyo = staff("tokyo", language="en", time_zone="Asia/Tokyo")
    me = get_user_model().objects.get(username="tokyo")
    response = tokyo.get(f"/admin/auth/user/{me.pk}/change/")
    assert response.status_code == 200
    assert 'data-admin-utc-offset="32400"' in response.content.decode()
    utc = staff("london", language="en", time_zone="UTC")
    page = utc.get(f"/admin/auth/user/{me.pk}/change/").content.decode()
    assert 'data-admin-utc-offset="0"' in page


def test_the_export_writes_the_users_times_and_days(late_order):
    """The CSV is streamed after the page's view returns: still in the user's zone."""
    tokyo = staff("tokyo", language="en", time_zone="Asia/Tokyo")
    utc = staff("london", language="en", time_zone="UTC")
    export = f"{LIST}export.csv"

    def first_seen(client, day: str) -> tuple[list[str], str]:
        response = client.get(export, {"first_event_at_from": day, "first_event_at_to": day})
        lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
        rows = list(csv.DictReader(lines))
        header = next(h for h in rows[0] if h.startswith("First seen"))
        return [row["Card id"] for row in rows], f"{header}={rows[0][header]}"

    assert first_seen(tokyo, "2026-12-05") == (
        ["card-2330"],
        "First seen (JST)=2026-12-05 08:30:00",
    )
    assert first_seen(utc, "2026-12-04") == (["card-2330"], "First seen (UTC)=2026-12-04 23:30:00")


def test_a_japanese_site_reads_japanese_in_tokyo_time_by_default(late_order, settings):
    settings.LANGUAGE_CODE = "ja"
    nobody = staff("taro")  # no preference, a browser that names no language
    page = nobody.get(f"{LIST}{late_order.pk}/change/")
    assert page["Content-Language"] == "ja"
    assert "2026年12月5日 08:30 JST" in text_of(page)


def test_the_site_zone_setting_wins_over_the_languages_zone(late_order, settings):
    settings.PORTAL_TIME_ZONE = "UTC"
    hanako = staff("hanako", HTTP_ACCEPT_LANGUAGE="ja-JP,ja;q=0.9")
    assert "2026年12月4日 23:30 UTC" in text_of(hanako.get(f"{LIST}{late_order.pk}/change/"))
