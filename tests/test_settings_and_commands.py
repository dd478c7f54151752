"""Settings per environment and the set-up commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from tracking.models import Issuer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "a-long-enough-secret-for-this-check-only-0123456789",
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "DATABASE_URL": "postgres://portal@db.example.com/portal",
    }
    del env[missing]
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


@pytest.mark.django_db
def test_create_issuer_is_idempotent(capsys):
    call_command("create_issuer", "ISSUERX001", "--name", "Example Bank")
    call_command("create_issuer", "ISSUERX001", "--name", "Example Bank")
    assert Issuer.objects.get().name == "Example Bank"
    assert "Already registered" in capsys.readouterr().out


@pytest.mark.django_db
def test_create_issuer_refuses_a_malformed_id():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="exactly 10 letters or digits"):
        call_command("create_issuer", "SHORT")
