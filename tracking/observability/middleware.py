"""Middleware that times D1's webhook POSTs for the latency histogram."""

from __future__ import annotations

import time

from tracking.infrastructure import metrics

WEBHOOK_URL_NAME = "d1-card-notifications"


class WebhookTimingMiddleware:
    """Observe the wall time of every webhook request, refusals included, by status class."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == WEBHOOK_URL_NAME:
            metrics.webhook_duration_observe(
                status=response.status_code, seconds=time.perf_counter() - started
            )
        return response
