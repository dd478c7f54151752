"""Where events may be sent: https in production, and never to the portal's own networks.

An endpoint's address is checked when it is saved and again at each send, on the addresses the
name resolves to then (a name that resolved to a public address yesterday may resolve to
127.0.0.1 today): every address must be public, or inside EVENT_ENDPOINT_ALLOWED_NETWORKS.
The connection is then made to the address that was checked (`tracking.outbound.delivery`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _


class AddressRefused(ValueError):
    """The endpoint's address may not receive events; the message says why."""


def url_check(url: str) -> tuple[str, int]:
    """The host and port of `url`, or AddressRefused when its form is not allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(_("The address is not a valid URL.")) from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AddressRefused(_("The address must start with https:// and name a host."))
    if parts.scheme != "https" and settings.EVENT_ENDPOINT_REQUIRE_HTTPS:
        raise AddressRefused(_("The address must use https."))
    if parts.username or parts.password:
        raise AddressRefused(_("The address may not carry a user name or password."))
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.EVENT_ENDPOINT_ALLOWED_NETWORKS]


def address_allowed(address: str) -> bool:
    """A public address, or one inside EVENT_ENDPOINT_ALLOWED_NETWORKS."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in _allowed_networks()):
        return True
    return ip.is_global and not ip.is_multicast


def addresses_resolve(url: str) -> tuple[str, int, list[str]]:
    """Host, port and the addresses `url`'s host resolves to now, each of them allowed.

    Raises AddressRefused when the form is refused, the name does not resolve, or any address
    is private, loopback, link-local or otherwise not public (and not allowed in settings).
    """
    host, port = url_check(url)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(_("The host name does not resolve.")) from exc
    addresses = sorted({info[4][0] for info in infos})
    refused = [a for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        raise AddressRefused(
            _("The host resolves to an address events may not be sent to (%(address)s).")
            % {"address": ", ".join(refused) or host}
        )
    return host, port, addresses
