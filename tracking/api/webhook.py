"""The endpoint D1 posts card-operation notifications to (SPEC §1).

A thin DRF view: D1's credentials are checked by `tracking.api.d1_auth` (client certificate,
bearer token bound to the issuer), then the view checks the transport (method, issuer, size,
content type) and hands the bytes to `tracking.services.deliveries`, which owns what is stored
and what is answered. It is not wrapped in a transaction on purpose: a refusal must be recorded
even when the ingest transaction rolls back.
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
from tracking.d1_access import client_address
from tracking.data_care import pan_mask_text
from tracking.models import Issuer
from tracking.observability.logs import request_id_clean
from tracking.services.deliveries import (
    Answer,
    Envelope,
    delivery_receive,
    delivery_refuse,
    refusal_tally,
)
from tracking.validation import ID_PATTERN, ISSUER_ID_LENGTH

D1_ERROR = inline_serializer(
    "D1Error", {"errorCode": serializers.CharField(), "error": serializers.CharField()}
)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
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


def _is_issuer_id(value: str) -> bool:
    return len(value) == ISSUER_ID_LENGTH and bool(ID_PATTERN.fullmatch(value))


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
        envelope = _envelope(http, issuer_id)
        issuer = (
            Issuer.objects.filter(issuer_id=issuer_id, is_active=True).first()
            if _is_issuer_id(issuer_id)
            else None
        )
        if issuer is None:
            return self._refusal(
                delivery_refuse(
                    envelope=envelope,
                    status=404,
                    error_code="ISSUER_NOT_FOUND",
                    error=f"Issuer {envelope.issuer_id_in_path!r} is not registered or not active.",
                    body=_read(http, settings.D1_REJECTED_BODY_KEEP_BYTES),
                )
            )
        cap = settings.D1_WEBHOOK_MAX_BODY_BYTES
        if envelope.byte_size > cap:
            return self._refusal(self._too_large(envelope, issuer, http, cap))
        if not _is_json(envelope.content_type):
            return self._refusal(
                delivery_refuse(
                    envelope=envelope,
                    status=415,
                    error_code="UNSUPPORTED_MEDIA_TYPE",
                    error="The body must be sent as application/json.",
                    body=_read(http, settings.D1_REJECTED_BODY_KEEP_BYTES),
                    issuer=issuer,
                )
            )
        body = _read_body(http, cap + 1)
        if body is None:
            return self._refusal(
                delivery_refuse(
                    envelope=envelope,
                    status=411,
                    error_code="LENGTH_REQUIRED",
                    error="The chunked body could not be read here; send it with Content-Length.",
                    issuer=issuer,
                )
            )
        if len(body) > cap:  # a chunked body, or one that lied about its length
            return self._refusal(self._too_large(envelope, issuer, http, cap, body))
        envelope = Envelope(**{**envelope.__dict__, "byte_size": len(body)})
        answer = delivery_receive(envelope=envelope, issuer=issuer, body=body)
        if answer.status == 204:
            return Response(status=204)
        return self._refusal(answer)

    def _too_large(self, envelope, issuer, http, cap, body=b"") -> Answer:
        return delivery_refuse(
            envelope=envelope,
            status=413,
            error_code="PAYLOAD_TOO_LARGE",
            error=f"The body is larger than {cap} bytes.",
            body=body or _read(http, settings.D1_REJECTED_BODY_KEEP_BYTES),
            issuer=issuer,
        )

    @staticmethod
    def _refusal(answer: Answer) -> Response:
        response = Response(answer.body, status=answer.status)
        if answer.status == 503:
            response["Retry-After"] = "5"
        return response

    def handle_exception(self, exc: Exception) -> Response:
        """Answer every framework refusal (401, 403, 405, 429) in D1's error shape; count it.

        The body of a caller that did not pass the gate is not kept: it is not D1's until
        proven. The refusal is counted in its source's tally for the minute, not kept as a
        delivery, so a flood of them cannot fill the deliveries table.
        """
        if isinstance(exc, DatabaseError):
            # The database is away (issuer lookup, token check): nothing was stored, so D1
            # must retry later. Recording the refusal is best effort for the same reason.
            return self._refusal(
                delivery_refuse(
                    envelope=_envelope(self.request._request, self.kwargs.get("issuer_id", "")),
                    status=503,
                    error_code="TEMPORARILY_UNAVAILABLE",
                    error="The notification could not be stored; retry later.",
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


_STATUS_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    405: "METHOD_NOT_ALLOWED",
    429: "TOO_MANY_REQUESTS",
}


def _error_code(exc: exceptions.APIException, status: int) -> str:
    """The exception's own code when it names the reason, else one per status."""
    code = getattr(exc.detail, "code", "") or ""
    if code and code != exc.default_code:
        return str(code).upper()[:64]
    return _STATUS_CODES.get(status, str(exc.default_code).upper())


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
