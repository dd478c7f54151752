"""Production settings: refuse to start without their secrets, and pass `check --deploy`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL")


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "CACHE_URL": "locmemcache://",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def manage(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_production_refuses_to_start_without_its_secrets_and_passes_the_deploy_check(tmp_path):
    # All at once: each is a fresh interpreter, and they run side by side.
    missing = {name: manage(production_env(tmp_path, **{name: ""}), "check") for name in REQUIRED}
    deploy = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")

    for name, process in missing.items():
        output, _ = process.communicate(timeout=120)
        assert process.returncode != 0
        assert f"{name} must be set in production" in output
    output, _ = deploy.communicate(timeout=120)
    assert deploy.returncode == 0, output
    assert "no issues" in output


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("D1_WEBHOOK_REQUIRE_BEARER", True),
        ("D1_REQUIRE_CLIENT_CERT", True),
        ("ADMIN_REQUIRE_OTP", True),
        ("SESSION_COOKIE_SECURE", True),
        ("CSRF_COOKIE_SECURE", True),
        ("SECURE_HSTS_SECONDS", 31536000),
        ("SECURE_SSL_REDIRECT", True),
    ],
)
def test_production_defaults_to_the_strict_settings(monkeypatch, tmp_path, name, value):
    for key, env_value in production_env(tmp_path).items():
        monkeypatch.setenv(key, env_value)
    for key in ("D1_WEBHOOK_REQUIRE_BEARER", "D1_REQUIRE_CLIENT_CERT", "ADMIN_REQUIRE_OTP"):
        monkeypatch.delenv(key, raising=False)
    namespace: dict = {}
    source = (ROOT / "config/settings/production.py").read_text()
    exec(compile(source, "production.py", "exec"), namespace)

    assert namespace[name] == value
    assert namespace["SECURE_CSP"]["default-src"] == ["'self'"]
    assert namespace["SECURE_CSP"]["frame-ancestors"] == ["'none'"]
