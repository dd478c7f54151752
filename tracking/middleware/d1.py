"""D1's requests: the webhook's latency, the proxy-verified certificate, the webhook's short way.

The webhook's route is named here once (`WEBHOOK_URL_NAME`, under `WEBHOOK_PREFIX`): the URL
configuration and every middleware that recognises the webhook read it.
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from tracking.d1.access import verified_client_subject
from tracking.infrastructure import metrics

WEBHOOK_PREFIX = "/notifications/"
WEBHOOK_URL_NAME = "d1-card-notifications"
# A view under the prefix may take the short way too by carrying this attribute set to True.
FAST_PATH_ATTRIBUTE = "skips_staff_middleware"


class WebhookTimingMiddleware:
    """Observe the wall time of every webhook request, refusals included, by status class."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == WEBHOOK_URL_NAME:
            metrics.webhook_duration_observe(
                status=response.status_code, seconds=time.perf_counter() - started
            )
        return response


class D1ClientCertificateMiddleware:
    """Set `request.d1_client_identity` to the certificate subject a trusted proxy verified.

    The header is ignored from any other address, so a caller cannot claim a certificate by
    sending the header itself.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.d1_client_identity = verified_client_subject(request)
        return self.get_response(request)


class WebhookFastPathMiddleware:
    """Call the webhook view directly, without the middleware listed after this one.

    Sessions, CSRF, staff authentication and its second factor, the login requirement, edit
    history, messages, frame options and the login lockout all serve staff pages; D1 is
    authenticated by its certificate and bearer token inside the view (DRF), keeps no session
    and is sent no HTML. What is listed before this middleware still runs for every POST: the
    latency histogram, the request-id logs, the security headers and the proxy's certificate.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(WEBHOOK_PREFIX):
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        if match.url_name != WEBHOOK_URL_NAME and not getattr(
            match.func, FAST_PATH_ATTRIBUTE, False
        ):
            return self.get_response(request)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        # DRF answers with a lazily rendered response; the handler would render it further in.
        render = getattr(response, "render", None)
        if callable(render) and not getattr(response, "is_rendered", True):
            response = render()
        return response
