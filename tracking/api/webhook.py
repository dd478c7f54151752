"""The endpoint D1 posts card-operation notifications to (SPEC §1).

A thin DRF view: D1's credentials are checked by `tracking.api.d1_auth` (client certificate,
bearer token bound to the issuer), then the view reads the transport (headers, the body however
it was sent) and hands it to `tracking.intake.contract.webhook_answer`, which owns every
check, what is stored and what is answered (status, D1's error shape, Retry-After). It is not
wrapped in a transaction on purpose: a refusal must be recorded even when the ingest
transaction rolls back.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tracking.api.d1_auth import D1CallerAuthentication, D1CallerMayNotifyIssuer
from tracking.api.d1_schema import NotificationBodySchema
from tracking.d1.access import client_address
from tracking.domain.masking import pan_mask_text
from tracking.infrastructure.request_ids import request_id_clean
from tracking.intake.contract import (
    GATE_ERROR_CODES,
    Answer,
    Envelope,
    refuse_as,
    webhook_answer,
)
from tracking.intake.refusal_tally import refusal_tally

D1_ERROR = inline_serializer(
    "D1Error", {"errorCode": serializers.CharField(), "error": serializers.CharField()}
)


def _envelope(http, issuer_id: str) -> Envelope:
    return Envelope(
        # The path is the caller's to write: a card number in it is masked before it is kept.
        issuer_id_in_path=pan_mask_text(issuer_id)[:64],
        # D1's pattern, and not derived from personal data (SPEC §1.2); anything else is not
        # trusted into our logs and records.
        correlation_id=request_id_clean(http.headers.get("x-correlation-id", "")),
        client_identity=getattr(http, "d1_client_identity", ""),
        remote_addr=client_address(http)[:64],
        content_type=http.headers.get("content-type", ""),
        byte_size=_content_length(http),
    )


def _response(answer: Answer) -> Response:
    """The one HTTP answer of the webhook, built from the service's `Answer`."""
    if answer.status == 204:
        return Response(status=204)
    return Response(answer.body, status=answer.status, headers=answer.headers)


class CardNotificationView(APIView):
    """POST /notifications/d1/v2/issuers/{issuerId}/cards"""

    authentication_classes = [D1CallerAuthentication]
    permission_classes = [D1CallerMayNotifyIssuer]
    # POST only: OPTIONS (DRF's metadata) and HEAD are answered 405 like any other method.
    http_method_names = ["post"]
    throttle_classes: list = []
    parser_classes = [JSONParser]  # for the schema only: the view reads the raw body itself

    @extend_schema(
        operation_id="notify_card_operations",
        summary="D1 notifies card operations (production and shipment)",
        request=NotificationBodySchema,
        responses={
            204: OpenApiResponse(description="Stored and applied."),
            400: D1_ERROR,
            401: D1_ERROR,
            403: D1_ERROR,
            404: D1_ERROR,
            411: D1_ERROR,
            413: D1_ERROR,
            415: D1_ERROR,
            429: D1_ERROR,
            503: D1_ERROR,
        },
        parameters=[
            OpenApiParameter(
                "issuer_id",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                pattern="^[A-Za-z0-9_-]{10}$",
                description="The 10-character D1 issuerId.",
            ),
            OpenApiParameter(
                "x-correlation-id",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="D1's correlation id, pattern ^[A-Za-z0-9_-]{1,64}$.",
            ),
        ],
        tags=["D1 notifications"],
    )
    def post(self, request: Request, issuer_id: str) -> Response:
        http = request._request
        body = _read_body(http, settings.D1_WEBHOOK_MAX_BODY_BYTES + 1)
        return _response(
            webhook_answer(envelope=_envelope(http, issuer_id), issuer_id=issuer_id, body=body)
        )

    def handle_exception(self, exc: Exception) -> Response:
        """Answer every framework refusal (401, 403, 405, 429) in D1's error shape; count it.

        The body of a caller that did not pass the gate is not kept: it is not D1's until
        proven. The refusal is counted in its source's tally for the minute, not kept as a
        delivery, so a flood of them cannot fill the deliveries table.
        """
        if isinstance(exc, DatabaseError):
            # The database is away (issuer lookup, token check): nothing was stored, so D1
            # must retry later. Recording the refusal is best effort for the same reason.
            return _response(
                refuse_as(
                    "unavailable",
                    envelope=_envelope(self.request._request, self.kwargs.get("issuer_id", "")),
                )
            )
        if not isinstance(exc, exceptions.APIException):
            return super().handle_exception(exc)
        response = super().handle_exception(exc)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        answer = refusal_tally(
            envelope=_envelope(self.request._request, self.kwargs.get("issuer_id", "")),
            status=response.status_code,
            error_code=_error_code(exc, response.status_code),
            error=str(detail),
        )
        response.data = answer.body
        return response


def _error_code(exc: exceptions.APIException, status: int) -> str:
    """The exception's own code when it names the reason, else one per status."""
    code = getattr(exc.detail, "code", "") or ""
    if code and code != exc.default_code:
        return str(code).upper()[:64]
    return GATE_ERROR_CODES.get(status, str(exc.default_code).upper())


def _content_length(http) -> int:
    try:
        return max(int(http.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _read(http, limit: int) -> bytes:
    try:
        return http.read(limit)
    except Exception:
        return b""


def _read_body(http, limit: int) -> bytes | None:
    """Up to `limit` bytes of the body, however it was sent; None when it cannot be read here.

    Django reads only Content-Length bytes, so a chunked body (no Content-Length) would look
    empty. A server that de-chunks the stream says so with `wsgi.input_terminated` (gunicorn
    does); the stream is then read to its end or the limit. Any other server would hand over
    the raw chunks, or block: that body is answered 411 rather than misread.
    """
    environ = http.META
    if environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" not in environ:
        return _read(http, limit)
    if not environ.get("wsgi.input_terminated"):
        return None
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    try:
        while size < limit:
            chunk = stream.read(min(limit - size, 64 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    return b"".join(chunks)
