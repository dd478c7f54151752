"""D1's token endpoint, `POST /authz/d1/v1/oauth2/token` (SPEC §5.3), on django-oauth-toolkit.

client_credentials with HTTP Basic client authentication and a form body; the answer is the
standard token response (`access_token`, `token_type` Bearer, `expires_in`, `scope`) plus the
`expires_at` timestamp D1's spec shows. In front of the toolkit: a rate limit per client
address (429 with Retry-After), the client certificate check (when required), and any other
grant type refused 400 `unsupported_grant_type` before anything is checked, so the endpoint
never says whether a staff password is right.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from oauth2_provider.views import TokenView

from tracking.d1.access import GRANT_CLIENT_CREDENTIALS, client_address, client_subject_refusal
from tracking.infrastructure.rate_limits import rate_limit_count

logger = logging.getLogger(__name__)

RATE_SCOPE = "d1-token"


class D1TokenView(TokenView):
    """Issue a bearer token to a D1 client (an OAuth application bound to one issuer)."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        address = client_address(request)
        window = settings.D1_RATE_LIMIT_WINDOW_SECONDS
        requests = rate_limit_count(scope=RATE_SCOPE, subject=address, window=window)
        if requests.hits > settings.D1_TOKEN_RATE_LIMIT:
            logger.warning("token request refused: rate limit address=%s", address)
            response = JsonResponse(
                {"error": "too_many_requests", "error_description": "Retry later."}, status=429
            )
            response["Retry-After"] = str(requests.retry_after)
            return response
        if request.POST.get("grant_type") != GRANT_CLIENT_CREDENTIALS:
            logger.info("token request refused: grant type address=%s", address)
            return JsonResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Only client_credentials is supported.",
                },
                status=400,
            )
        refusal = client_subject_refusal(getattr(request, "d1_client_identity", ""))
        if refusal is not None:
            logger.warning("token request refused: %s address=%s", refusal[0], address)
            return JsonResponse(
                {"error": "access_denied", "error_description": refusal[1]}, status=403
            )

        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:
            response = _with_expires_at(response)
            logger.info("token issued address=%s", address)
        else:
            logger.info("token refused status=%s address=%s", response.status_code, address)
        return response


def _with_expires_at(response: HttpResponse) -> HttpResponse:
    body = json.loads(response.content)
    expires_at = timezone.now() + timedelta(seconds=int(body.get("expires_in") or 0))
    body["expires_at"] = expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    response.content = json.dumps(body).encode()
    response["Content-Length"] = str(len(response.content))
    return response
