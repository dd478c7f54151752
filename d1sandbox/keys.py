"""The issuer's ES256 key pair and key id, kept in one folder that the sandbox and portal share."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PRIVATE_KEY_FILE = "private_key.pem"
PUBLIC_KEY_FILE = "public_key.pem"
KEY_ID_FILE = "kid"


@dataclass(frozen=True)
class KeyPairFiles:
    """Where one key pair lives and the key id D1 knows its public half by."""

    directory: Path
    key_id: str

    @property
    def private_key_path(self) -> Path:
        return self.directory / PRIVATE_KEY_FILE

    @property
    def public_key_path(self) -> Path:
        return self.directory / PUBLIC_KEY_FILE


def key_pair_ensure(*, directory: Path) -> KeyPairFiles:
    """Create a P-256 key pair and key id in `directory` unless one is already there.

    Writes private_key.pem (mode 600), public_key.pem and kid; an existing pair is kept as is,
    so re-running never invalidates a key the portal already uses.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    kid_path = directory / KEY_ID_FILE

    if private_path.exists():
        private_key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{private_path} is not an EC private key")
    else:
        private_key = ec.generate_private_key(ec.SECP256R1())
        pem = private_key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )
        # Created with 0600 from the start so the key is never readable by others, not even briefly.
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)

    public_pem = private_key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        public_path.write_bytes(public_pem)

    if kid_path.exists() and kid_path.read_text().strip():
        key_id = kid_path.read_text().strip()
    else:
        key_id = key_id_for(public_pem=public_pem)
        kid_path.write_text(key_id + "\n")
    return KeyPairFiles(directory=directory, key_id=key_id)


def key_id_for(*, public_pem: bytes) -> str:
    """A stable key id derived from the public key, so the same key always gets the same kid."""
    return "sbx-" + hashlib.sha256(public_pem).hexdigest()[:16]


def public_keys_load(*, directories: list[Path]) -> dict[str, ec.EllipticCurvePublicKey]:
    """Map key id to public key for every key folder given; a missing file raises."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for directory in directories:
        kid = (directory / KEY_ID_FILE).read_text().strip()
        public_key = serialization.load_pem_public_key((directory / PUBLIC_KEY_FILE).read_bytes())
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError(f"{directory / PUBLIC_KEY_FILE} is not an EC public key")
        keys[kid] = public_key
    return keys


def portal_environment_lines(*, key_pair: KeyPairFiles, api_port: int, host: str) -> list[str]:
    """The environment lines that point the portal's D1 client at a sandbox using this key."""
    base = f"http://{host}:{api_port}"
    return [
        f"D1_API_BASE_URL={base}/banking/v1",
        f"D1_TOKEN_URL={base}/authz/v1/oauth2/token",
        f"D1_KEY_ID={key_pair.key_id}",
        f"D1_PRIVATE_KEY_PATH={key_pair.private_key_path}",
    ]
