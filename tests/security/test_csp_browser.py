"""The production content security policy in a real browser: every admin page, no violation.

The live server runs with the production module's policy and browser-facing headers, and staff
sign in through the two-factor step as in production. Every list, add page, change page, the
order page and the pages reached from them (register, look-up, a file, the heat-map and one of its
cells) is opened; the browser reports each blocked script, style, image or eval
(`securitypolicyviolation`), and the theme's Alpine.js reports each expression it could not run.
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.fixtures.backoffice import load_backoffice_orders
from tests.fixtures.browser import needs_chromium
from tracking.d1.clients import d1_client_create
from tracking.insight import stage_times
from tracking.models import CardOrder

pytestmark = [
    needs_chromium,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "csp-root-password-1"
# Headers the production settings send to browsers (transport ones, TLS and HSTS, aside).
BROWSER_FACING = (
    "SECURE_CSP",
    "X_FRAME_OPTIONS",
    "SECURE_CROSS_ORIGIN_OPENER_POLICY",
    "SECURE_REFERRER_POLICY",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "CSRF_COOKIE_HTTPONLY",
    "ADMIN_REQUIRE_OTP",
)

LISTEN = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
    window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`
        + ` at ${e.sourceFile || ''}:${e.lineNumber || ''} ${e.sample || ''}`);
});
"""


def production_settings(monkeypatch) -> dict:
    """The production module's values, read with the environment production requires."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "localhost")
    monkeypatch.setenv("DATABASE_URL", os.environ.get("DATABASE_URL", "sqlite:///unused.db"))
    sys.modules.pop("config.settings.production", None)
    module = importlib.import_module("config.settings.production")
    sys.modules.pop("config.settings.production", None)
    return {name: getattr(module, name) for name in BROWSER_FACING}


@pytest.fixture
def production_like(settings, monkeypatch):
    values = production_settings(monkeypatch)
    assert "'unsafe-inline'" not in values["SECURE_CSP"]["script-src"]
    for name, value in values.items():
        setattr(settings, name, value)
    return values


@pytest.fixture
def signed_in(chromium, live_server, production_like, issuer):
    """A superuser signed in with password and TOTP, problems collected per page."""
    load_backoffice_orders(issuer)
    d1_client_create(issuer=issuer)
    root = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    device = TOTPDevice.objects.create(user=root, name="phone", confirmed=True)
    context = chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    context.add_init_script(LISTEN)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text or "Alpine" in message.text
            else None
        ),
    )
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url("**/accounts/otp/**")
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    page.locator("input[name=otp_token]").fill(f"{code:0{device.digits}d}")
    page.locator("#id_otp_device").select_option(label="phone")
    page.locator("input[name=otp_token]").press("Enter")
    page.wait_for_url(f"{live_server.url}/admin/")
    yield page, problems
    context.close()


def admin_pages() -> list[str]:
    pages = ["/admin/", "/admin/password_change/"]
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        pages.append(base)
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            pages.append(f"{base}{obj.pk}/change/")
    pages += [
        "/admin/tracking/cardorder/?queue=exceptions",
        "/admin/tracking/readapitoken/add/",
        "/admin/tracking/d1client/add/",
        "/admin/tracking/issuer/add/",
        "/admin/auth/user/add/",
        "/admin/otp_totp/totpdevice/add/",
        "/admin/tracking/cardorder/register/",
        "/admin/tracking/cardorder/look-up/",
        "/admin/tracking/productionfile/heatmap/",
    ]
    # Pages reached only from other pages: one input file, one heat-map cell.
    order = CardOrder.objects.exclude(input_file_name="").order_by("pk").first()
    file = urlencode({"issuer": order.issuer_id, "name": order.input_file_name})
    cell = urlencode({"stage": stage_times.PRODUCTION_STAGES[0], "site": stage_times.ALL_SITES})
    pages += [
        f"/admin/tracking/productionfile/file/?{file}",
        f"/admin/tracking/productionfile/heatmap/cell/?{cell}",
    ]
    return pages


def violations_on(page, problems: list[str], url: str) -> list[str]:
    problems.clear()
    response = page.goto(url)
    assert response is not None and response.status < 400, (url, response and response.status)
    assert "/accounts/otp/" not in page.url and "/login/" not in page.url, (url, page.url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(150)  # deferred scripts (Alpine.js) start after load
    found = page.evaluate("window.__violations")
    return [*found, *problems]


def test_every_admin_page_runs_under_the_production_policy(signed_in):
    page, problems = signed_in
    header = page.goto("/admin/").headers["content-security-policy"]
    assert "'unsafe-inline'" not in header.split("script-src", 1)[1].split(";", 1)[0]

    report = {url: violations_on(page, problems, url) for url in admin_pages()}

    assert {url: found for url, found in report.items() if found} == {}
    assert len(report) > 30


def test_the_theme_still_works_under_the_policy(signed_in):
    page, problems = signed_in
    order = CardOrder.objects.order_by("pk").first()

    assert violations_on(page, problems, f"/admin/tracking/cardorder/{order.pk}/change/") == []
    # Alpine.js is running: it evaluated the theme's expressions (dark-mode toggle, menus).
    assert page.evaluate("() => typeof window.Alpine === 'object'")
    assert page.evaluate("() => document.querySelectorAll('[x-cloak]').length") == 0
    # Chart.js drew the dashboard's charts from the local static files.
    assert violations_on(page, problems, "/admin/") == []
    assert page.locator("canvas").count() >= 1
