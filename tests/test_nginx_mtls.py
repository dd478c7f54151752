"""docs/nginx-mtls.conf, for real: nginx verifies D1's client certificate in front of the portal.

The documented file is used as it is, with only its ports, certificate paths and upstream
rewritten for the test. Needs an `nginx` binary (PATH or $NGINX_BIN); skipped without one.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures import spec_examples as spec
from tracking.d1.clients import d1_client_create
from tracking.models import Issuer, NotificationDelivery

NGINX = os.environ.get("NGINX_BIN") or shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
ROOT = Path(__file__).resolve().parent.parent
D1_HOST, STAFF_HOST = "d1.portal.example.com", "portal.example.com"
SUBJECT = "CN=d1-notifications-test,O=Thales Test"

pytestmark = [
    pytest.mark.skipif(not NGINX, reason="needs an nginx binary (PATH or $NGINX_BIN)"),
    pytest.mark.django_db(transaction=True),
]


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(subject, issuer_name, key, signing_key, *, ca=False, hosts=()):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
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
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def _write(folder: Path, name: str, cert, key=None) -> None:
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (folder / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA for D1's client certificates, a server certificate, D1's and a stranger's certs."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Thales D1 test client CA", "Thales Test")
    ca = _certificate(ca_name, ca_name, ca_key, ca_key, ca=True)
    _write(folder, "ca", ca)
    (folder / "thales-d1-client-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        _name(STAFF_HOST, "Portal"), ca_name, server_key, ca_key, hosts=(D1_HOST, STAFF_HOST)
    )
    for host in (D1_HOST, STAFF_HOST):
        _write(folder, host, server, server_key)
    d1_name = _name("d1-notifications-test", "Thales Test")
    d1_key = ec.generate_private_key(ec.SECP256R1())
    _write(folder, "d1", _certificate(d1_name, ca_name, d1_key, ca_key), d1_key)
    # The same name, signed by someone else.
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate(d1_name, d1_name, stranger_key, stranger_key)
    _write(folder, "stranger", stranger, stranger_key)
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def proxy(pki, live_server, tmp_path, settings):
    """nginx with the documented configuration, in front of the live portal."""
    settings.ALLOWED_HOSTS = [D1_HOST, STAFF_HOST]
    upstream = live_server.url.rsplit(":", 1)[1]
    tls_port, http_port = _free_port(), _free_port()
    documented = (ROOT / "docs/nginx-mtls.conf").read_text()
    site = (
        documented.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
        .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl;")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("/etc/nginx/tls/", f"{pki}/")
        .replace("/var/log/nginx/", f"{tmp_path}/")
    )
    assert site.count(f"127.0.0.1:{tls_port} ssl;") == 2 and f":{upstream};" in site
    (tmp_path / "site.conf").write_text(site)
    temp = {n: tmp_path / n for n in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n client_body_temp_path {temp['body']};\n"
        f" proxy_temp_path {temp['proxy']};\n fastcgi_temp_path {temp['fastcgi']};\n"
        f" uwsgi_temp_path {temp['uwsgi']};\n scgi_temp_path {temp['scgi']};\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c",
         str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
    yield tls_port
    process.terminate()
    process.wait(timeout=10)


def _pool(port: int, host: str, pki: Path, cert: str | None):
    return urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        port,
        server_hostname=host,
        assert_hostname=host,
        ca_certs=str(pki / "ca.crt"),
        cert_file=str(pki / f"{cert}.crt") if cert else None,
        key_file=str(pki / f"{cert}.key") if cert else None,
        retries=False,
        timeout=10,
    )


def _request(pool, method, path, host, body=None, headers=None):
    return pool.request(method, path, body=body, headers={"Host": host, **(headers or {})})


def test_d1_reaches_the_portal_only_with_its_certificate_and_token(proxy, pki, settings):
    settings.D1_REQUIRE_CLIENT_CERT = True
    settings.D1_WEBHOOK_REQUIRE_BEARER = True
    settings.D1_TRUSTED_PROXIES = ["127.0.0.1/32"]
    settings.D1_ALLOWED_CLIENT_SUBJECTS = [SUBJECT]
    issuer = Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Example Bank")
    credentials = d1_client_create(issuer=issuer)
    basic = base64.b64encode(f"{credentials.client_id}:{credentials.client_secret}".encode())
    d1 = _pool(proxy, D1_HOST, pki, "d1")

    token = _request(
        d1,
        "POST",
        "/authz/d1/v1/oauth2/token",
        D1_HOST,
        body="grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic.decode()}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert token.status == 200, token.data
    notified = _request(
        d1,
        "POST",
        f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards",
        D1_HOST,
        body=json.dumps(spec.E1).encode(),
        headers={
            "Authorization": f"Bearer {token.json()['access_token']}",
            "Content-Type": "application/json",
            "X-SSL-Client-S-DN": "CN=forged",  # overwritten by the proxy
        },
    )
    assert notified.status == 204, notified.data
    delivery = NotificationDelivery.objects.get(status_code=204)
    assert delivery.client_identity == SUBJECT
    assert delivery.remote_addr == "127.0.0.1"


@pytest.mark.parametrize("cert", [None, "stranger"], ids=["no-certificate", "other-ca"])
def test_without_a_certificate_from_thales_ca_nothing_gets_through(proxy, pki, cert):
    pool = _pool(proxy, D1_HOST, pki, cert)
    try:
        response = _request(pool, "POST", "/authz/d1/v1/oauth2/token", D1_HOST, body="x")
    except urllib3.exceptions.SSLError:
        return  # refused in the handshake
    assert response.status == 400  # nginx: "No required SSL certificate was sent" / bad one
    assert not NotificationDelivery.objects.exists()


def test_staff_host_serves_no_d1_endpoint_and_forwards_no_claimed_certificate(proxy, pki):
    staff = _pool(proxy, STAFF_HOST, pki, None)

    webhook = _request(
        staff, "POST", f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards", STAFF_HOST
    )
    login = _request(
        staff, "GET", "/admin/login/", STAFF_HOST, headers={"X-SSL-Client-S-DN": SUBJECT}
    )

    assert webhook.status == 404
    assert login.status == 200


def test_a_chunked_body_reaches_the_portal_whole_through_the_proxy(proxy, pki):
    Issuer.objects.create(issuer_id=spec.ISSUER_ID, name="Example Bank")
    body = json.dumps(spec.E12).encode()
    d1 = _pool(proxy, D1_HOST, pki, "d1")

    response = d1.urlopen(
        "POST",
        f"/notifications/d1/v2/issuers/{spec.ISSUER_ID}/cards",
        body=(body[start : start + 100] for start in range(0, len(body), 100)),
        headers={"Host": D1_HOST, "Content-Type": "application/json"},
        chunked=True,
    )

    assert response.status == 204, response.data
    delivery = NotificationDelivery.objects.get()
    assert (delivery.byte_size, delivery.new_count) == (len(body), 2)


def test_the_access_log_keeps_no_query_string(proxy, pki, tmp_path):
    staff = _pool(proxy, STAFF_HOST, pki, None)

    response = _request(
        staff,
        "GET",
        "/admin/login/?next=/admin/&q=4111111111111111&access_token=s3cret",
        STAFF_HOST,
    )

    assert response.status == 200
    time.sleep(0.2)  # nginx writes the line after the answer
    logged = (tmp_path / "portal-access.log").read_text()
    assert '"GET /admin/login/ HTTP/1.1" 200' in logged
    assert "4111111111111111" not in logged and "s3cret" not in logged
