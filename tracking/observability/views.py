"""GET /metrics for Prometheus, open to a bearer token or to allowed networks only."""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET

from tracking.observability import metrics


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def metrics_access_allowed(request: HttpRequest) -> bool:
    """A matching `Authorization: Bearer METRICS_TOKEN`, or a peer in METRICS_ALLOWED_NETWORKS.

    The peer is REMOTE_ADDR as gunicorn sees it: behind a proxy, list the proxy's address or
    (better) use the token.
    """
    token = settings.METRICS_TOKEN
    header = request.headers.get("authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


# Guarded by its own token or network rule, not by a staff login.
@login_not_required
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_access_allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain; charset=utf-8")
    body, content_type = metrics.metrics_render()
    response = HttpResponse(body, content_type=content_type)
    add_never_cache_headers(response)
    return response
