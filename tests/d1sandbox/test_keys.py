"""`python -m d1sandbox keys`: one key pair per folder, kept across runs, and the D1_* lines."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from d1sandbox.cli import main


def _keys_lines(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["keys", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_keys_creates_a_p256_pair_and_prints_the_portal_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "keys"
    lines = _keys_lines(capsys, str(directory), "--api-port", "18150")

    kid = (directory / "kid").read_text().strip()
    assert lines == [
        "D1_API_BASE_URL=http://127.0.0.1:18150/banking/v1",
        "D1_TOKEN_URL=http://127.0.0.1:18150/authz/v1/oauth2/token",
        f"D1_KEY_ID={kid}",
        f"D1_PRIVATE_KEY_PATH={(directory / 'private_key.pem').resolve()}",
    ]
    private_key = serialization.load_pem_private_key(
        (directory / "private_key.pem").read_bytes(), password=None
    )
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    assert isinstance(private_key.curve, ec.SECP256R1)
    assert stat.S_IMODE((directory / "private_key.pem").stat().st_mode) == 0o600
    public_key = serialization.load_pem_public_key((directory / "public_key.pem").read_bytes())
    assert public_key.public_numbers() == private_key.public_key().public_numbers()


def test_keys_rerun_keeps_the_existing_key_and_kid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "keys"
    first = _keys_lines(capsys, str(directory))
    private_pem = (directory / "private_key.pem").read_bytes()

    second = _keys_lines(capsys, str(directory))

    assert second == first
    assert (directory / "private_key.pem").read_bytes() == private_pem
    assert first[0] == "D1_API_BASE_URL=http://127.0.0.1:8090/banking/v1"
