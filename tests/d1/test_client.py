"""The D1 client against the D1 sandbox over real HTTP: token caching, retries, errors and mTLS."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.cache import cache

from d1sandbox.keys import KeyPairFiles, key_pair_ensure
from d1sandbox.state import ItemKey, StateStore
from d1sandbox.testing import SandboxProcess
from tracking.d1.client import (
    D1ApiClient,
    D1CardNotFoundError,
    D1Config,
    D1ConfigurationError,
    D1Error,
    d1_api_client_for,
)

ISSUER = "ISSUERX001"
CARD = "card-000123"
LATEST_ITEM = {
    "operationId": "op-7f3c9a12e4b54d01",
    "operation": "PRODUCE",
    "status": "PENDING",
    "startTime": "2026-03-02T09:15:04.120Z",
    "cardId": CARD,
    "details": {"status": "CARD_PROD_ONGOING", "productionSite": "PERSO-SITE-EU-01"},
}
# Short enough that the client's cached copy (half the lifetime) expires after a small time
# travel whose assertion iat the sandbox still accepts (its clock skew allowance is 30 s).
TOKEN_TTL_SECONDS = 40


@pytest.fixture(scope="module")
def d1_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPairFiles:
    return key_pair_ensure(directory=tmp_path_factory.mktemp("d1keys"))


@pytest.fixture(scope="module")
def d1_state_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("d1state") / "state.sqlite3"
    store = StateStore(path)
    run_id, _ = store.run_start(seed=0, run_number=None, options={})
    requested = {**LATEST_ITEM, "details": {"status": "CARD_PROD_REQUESTED"}}
    store.items_record(
        run_id=run_id,
        happenings=[
            (ItemKey(ISSUER, CARD, LATEST_ITEM["operationId"], 0), requested, False),
            (ItemKey(ISSUER, CARD, LATEST_ITEM["operationId"], 1), LATEST_ITEM, False),
        ],
    )
    store.close()
    return path


@pytest.fixture(scope="module")
def d1_sandbox_process(
    d1_keys: KeyPairFiles, d1_state_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxProcess]:
    with SandboxProcess(
        keys_dir=d1_keys.directory,
        state_path=d1_state_path,
        log_path=tmp_path_factory.mktemp("d1log") / "serve.log",
        extra_args=["--token-ttl", str(TOKEN_TTL_SECONDS)],
    ) as process:
        yield process


@pytest.fixture
def d1_sandbox(d1_sandbox_process: SandboxProcess, d1_keys: KeyPairFiles, settings):
    """A clean sandbox, no cached token, and settings pointing the client at the sandbox."""
    d1_sandbox_process.reset()
    settings.D1_API_BASE_URL = d1_sandbox_process.api_base_url
    settings.D1_TOKEN_URL = d1_sandbox_process.token_url
    settings.D1_KEY_ID = d1_keys.key_id
    settings.D1_PRIVATE_KEY_PATH = str(d1_keys.private_key_path)
    settings.D1_CLIENT_CERT = ""
    settings.D1_CLIENT_KEY = ""
    settings.D1_CA_BUNDLE = ""
    settings.D1_CONNECT_TIMEOUT = 2.0
    settings.D1_READ_TIMEOUT = 2.0
    settings.D1_MAX_RETRIES = 2
    settings.D1_BACKOFF_BASE = 0.01
    settings.D1_BACKOFF_CAP = 0.05
    settings.D1_RETRY_AFTER_MAX = 5.0
    settings.D1_ISSUER_OVERRIDES = {}
    # Only this sandbox's entries: the cache may be a Redis shared with other tests.
    token_key = D1ApiClient.for_issuer(ISSUER).token_cache_key()
    cache.delete_many([token_key, f"{token_key}:lock"])
    yield d1_sandbox_process
    cache.delete_many([token_key, f"{token_key}:lock"])


def _status_requests(sandbox: SandboxProcess) -> dict[str, int]:
    return sandbox.stats()["status_requests"]


def _tokens_issued(sandbox: SandboxProcess) -> int:
    return sandbox.stats()["token_requests"].get("issued", 0)


# ---------------------------------------------------------------------------- happy path, tokens


def test_production_status_returns_the_latest_operation(d1_sandbox: SandboxProcess) -> None:
    client = D1ApiClient.for_issuer(ISSUER)

    operations = client.get_production_status(CARD, correlation_id="reconcile-test-1")

    assert operations == [LATEST_ITEM]
    time.sleep(0.1)
    assert "correlation=reconcile-test-1" in d1_sandbox.log_text()


def test_a_correlation_id_is_generated_and_a_bad_one_is_refused(
    d1_sandbox: SandboxProcess,
) -> None:
    client = D1ApiClient.for_issuer(ISSUER)

    assert client.get_production_status(CARD) == [LATEST_ITEM]
    with pytest.raises(ValueError, match="correlation"):
        client.get_production_status(CARD, correlation_id="has spaces and é")


def test_one_token_serves_many_calls(d1_sandbox: SandboxProcess) -> None:
    client = D1ApiClient.for_issuer(ISSUER)

    for _ in range(5):
        client.get_production_status(CARD)
    # Another client (another worker process, same shared cache) reuses the token too.
    D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)

    assert _tokens_issued(d1_sandbox) == 1
    assert _status_requests(d1_sandbox) == {"total": 6, "ok": 6}


def test_concurrent_callers_fetch_the_token_once(d1_sandbox: SandboxProcess) -> None:
    clients = [D1ApiClient.for_issuer(ISSUER) for _ in range(8)]
    start = threading.Barrier(len(clients))
    tokens: list[str] = []

    def worker(client: D1ApiClient) -> None:
        start.wait()
        tokens.append(client.access_token())

    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(tokens) == 8
    assert len(set(tokens)) == 1
    assert _tokens_issued(d1_sandbox) == 1


def test_a_new_token_is_fetched_when_the_cached_one_is_due(d1_sandbox: SandboxProcess) -> None:
    client = D1ApiClient.for_issuer(ISSUER)
    first = client.access_token()

    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=TOKEN_TTL_SECONDS / 2 + 1)):
        second = client.access_token()
        assert client.get_production_status(CARD) == [LATEST_ITEM]

    assert second != first
    assert _tokens_issued(d1_sandbox) == 2


def test_a_401_renews_the_token_once_then_succeeds(d1_sandbox: SandboxProcess) -> None:
    client = D1ApiClient.for_issuer(ISSUER)
    client.get_production_status(CARD)
    d1_sandbox.revoke_tokens()

    assert client.get_production_status(CARD) == [LATEST_ITEM]

    assert _tokens_issued(d1_sandbox) == 2
    assert _status_requests(d1_sandbox) == {"total": 3, "ok": 2, "unauthorized": 1}


def test_a_persistent_401_raises_after_one_renewal(d1_sandbox: SandboxProcess) -> None:
    d1_sandbox.faults(script=[401, 401, 401])
    client = D1ApiClient.for_issuer(ISSUER)

    with pytest.raises(D1Error) as raised:
        client.get_production_status(CARD)

    assert raised.value.status == 401
    assert raised.value.error_code == "AUTHORIZER_UNAUTHORIZED"
    assert not raised.value.retryable
    assert _tokens_issued(d1_sandbox) == 2
    assert _status_requests(d1_sandbox)["total"] == 2


# ---------------------------------------------------------------------------- retries and errors


def test_retry_after_is_respected_on_429(d1_sandbox: SandboxProcess) -> None:
    client = D1ApiClient.for_issuer(ISSUER)
    client.access_token()
    d1_sandbox.faults(script=[429], retry_after=1)

    started = time.monotonic()
    operations = client.get_production_status(CARD)
    waited = time.monotonic() - started

    assert operations == [LATEST_ITEM]
    assert waited >= 1.0, "the backoff base is 10 ms, so only Retry-After explains the wait"
    assert _status_requests(d1_sandbox) == {"total": 2, "injected_429": 1, "ok": 1}


def test_retry_after_is_capped(d1_sandbox: SandboxProcess, settings) -> None:
    settings.D1_RETRY_AFTER_MAX = 0.2
    client = D1ApiClient.for_issuer(ISSUER)
    client.access_token()
    d1_sandbox.faults(script=[429], retry_after=30)

    started = time.monotonic()
    client.get_production_status(CARD)

    assert 0.2 <= time.monotonic() - started < 5


def test_a_passing_5xx_is_retried(d1_sandbox: SandboxProcess) -> None:
    d1_sandbox.faults(script=[502, 504])

    assert D1ApiClient.for_issuer(ISSUER).get_production_status(CARD) == [LATEST_ITEM]
    assert _status_requests(d1_sandbox) == {
        "total": 3,
        "injected_502": 1,
        "injected_504": 1,
        "ok": 1,
    }


def test_a_lasting_5xx_is_retried_then_raised(d1_sandbox: SandboxProcess) -> None:
    d1_sandbox.faults(rate_5xx=1.0, status_5xx=503)

    with pytest.raises(D1Error) as raised:
        D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)

    assert raised.value.status == 503
    assert raised.value.retryable
    assert "INTERNAL_ERROR" in raised.value.body
    assert _status_requests(d1_sandbox) == {"total": 3, "injected_503": 3}  # 1 + 2 retries


def test_a_500_is_not_retried_but_marked_retryable(d1_sandbox: SandboxProcess) -> None:
    d1_sandbox.faults(script=[500])

    with pytest.raises(D1Error) as raised:
        D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)

    assert (raised.value.status, raised.value.retryable) == (500, True)
    assert _status_requests(d1_sandbox)["total"] == 1


def test_a_read_timeout_raises_d1_error(d1_sandbox: SandboxProcess, settings) -> None:
    settings.D1_READ_TIMEOUT = 0.2
    settings.D1_MAX_RETRIES = 1
    client = D1ApiClient.for_issuer(ISSUER)
    client.access_token()
    d1_sandbox.faults(latency_ms=700)

    started = time.monotonic()
    with pytest.raises(D1Error) as raised:
        client.get_production_status(CARD)

    assert raised.value.status is None
    assert raised.value.retryable
    assert "timed out" in str(raised.value)
    assert time.monotonic() - started < 1.4, "gave up on each attempt at the read timeout"


def test_an_unknown_card_raises_the_unknown_at_d1_error(d1_sandbox: SandboxProcess) -> None:
    with pytest.raises(D1CardNotFoundError) as raised:
        D1ApiClient.for_issuer(ISSUER).get_production_status("card-nobody-ordered")

    assert isinstance(raised.value, D1Error)
    assert raised.value.status == 404
    assert raised.value.error_code == "CARD_NOT_FOUND"
    assert not raised.value.retryable


def test_an_unreachable_d1_raises_a_retryable_error(d1_sandbox: SandboxProcess, settings) -> None:
    settings.D1_TOKEN_URL = "http://127.0.0.1:9/authz/v1/oauth2/token"

    with pytest.raises(D1Error) as raised:
        D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)

    assert raised.value.status is None
    assert raised.value.retryable


def test_a_refused_assertion_raises_d1_error(d1_sandbox: SandboxProcess, settings) -> None:
    settings.D1_KEY_ID = "sbx-not-provisioned"

    with pytest.raises(D1Error) as raised:
        D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)

    assert raised.value.status == 400
    assert raised.value.error_code == "CRYPTO_ERROR"


# ---------------------------------------------------------------------------- configuration


def test_config_reads_settings_and_per_issuer_overrides(
    d1_sandbox: SandboxProcess, settings
) -> None:
    settings.D1_ISSUER_OVERRIDES = {"ISSUERX002": {"key_id": "kid-2", "read_timeout": 1.5}}

    default = D1Config.for_issuer(ISSUER)
    overridden = D1Config.for_issuer("ISSUERX002")

    assert default.api_base_url == d1_sandbox.api_base_url
    assert (default.max_retries, default.backoff_base) == (2, 0.01)
    assert (overridden.key_id, overridden.read_timeout) == ("kid-2", 1.5)
    assert overridden.token_url == default.token_url


def test_unknown_override_keys_and_missing_keys_are_configuration_errors(
    d1_sandbox: SandboxProcess, settings
) -> None:
    settings.D1_ISSUER_OVERRIDES = {"ISSUERX002": {"kid": "typo"}}
    with pytest.raises(D1ConfigurationError):
        D1Config.for_issuer("ISSUERX002")

    settings.D1_PRIVATE_KEY_PATH = ""
    with pytest.raises(D1ConfigurationError):
        D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)


def test_clients_are_reused_per_issuer_and_configuration(d1_sandbox: SandboxProcess) -> None:
    assert d1_api_client_for(ISSUER) is d1_api_client_for(ISSUER)
    assert d1_api_client_for(ISSUER) is not d1_api_client_for("ISSUERX002")


# ---------------------------------------------------------------------------- mTLS


def _tls_material(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all made here."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "D1 sandbox test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usage: x509.ObjectIdentifier) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    files: dict[str, Path] = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for name, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        cert_pem, key_pem = leaf(f"d1-sandbox-{name}", usage)
        files[f"{name}_cert"] = directory / f"{name}.pem"
        files[f"{name}_key"] = directory / f"{name}.key"
        files[f"{name}_cert"].write_bytes(cert_pem)
        files[f"{name}_key"].write_bytes(key_pem)
    return files


def test_mtls_refuses_a_client_without_certificate_and_accepts_one_with_it(
    d1_sandbox: SandboxProcess,
    d1_keys: KeyPairFiles,
    d1_state_path: Path,
    tmp_path: Path,
    settings,
) -> None:
    tls = _tls_material(tmp_path)
    with SandboxProcess(
        keys_dir=d1_keys.directory,
        state_path=d1_state_path,
        log_path=tmp_path / "serve.log",
        extra_args=[
            "--tls-cert",
            str(tls["server_cert"]),
            "--tls-key",
            str(tls["server_key"]),
            "--client-ca",
            str(tls["ca"]),
        ],
    ) as mtls_sandbox:
        assert mtls_sandbox.url.startswith("https://")
        settings.D1_API_BASE_URL = mtls_sandbox.api_base_url
        settings.D1_TOKEN_URL = mtls_sandbox.token_url
        settings.D1_CA_BUNDLE = str(tls["ca"])
        settings.D1_MAX_RETRIES = 0

        with pytest.raises(D1Error) as refused:
            D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)

        settings.D1_CLIENT_CERT = str(tls["client_cert"])
        settings.D1_CLIENT_KEY = str(tls["client_key"])
        operations = D1ApiClient.for_issuer(ISSUER).get_production_status(CARD)
        stats = mtls_sandbox.stats(
            verify=str(tls["ca"]), cert=(str(tls["client_cert"]), str(tls["client_key"]))
        )

    assert refused.value.status is None
    assert operations == [LATEST_ITEM]
    assert stats["tls_refused"] >= 1
    assert stats["status_requests"] == {"total": 1, "ok": 1}
