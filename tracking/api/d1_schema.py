"""The OpenAPI description of D1's notification body (SPEC §1.4), for readers and for fuzzing.

Documentation only: the webhook never validates through these serializers. What is accepted
is decided by `tracking.domain.validation`, which is deliberately more forgiving (unknown fields and
codes are kept). Field names are D1's own (camelCase), as they appear on the wire.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers

from tracking.domain.validation import (
    CARD_ID_MAX,
    CODE_MAX,
    LONG_TEXT_MAX,
    OPERATION_ID_MAX,
    SHORT_CODE_MAX,
    TEXT_MAX,
)


def _text(max_length: int, **kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, required=False, **kwargs)


class ShipmentSchema(serializers.Serializer):
    carrier = _text(CODE_MAX, help_text="Carrier code, e.g. ups.")
    trackingNumber = _text(TEXT_MAX)
    status = _text(CODE_MAX, help_text="Carrier status (values not published by D1).")
    message = _text(LONG_TEXT_MAX)
    trackingUrl = _text(LONG_TEXT_MAX)


class DetailsSchema(serializers.Serializer):
    status = serializers.CharField(
        max_length=CODE_MAX, help_text="details.status, e.g. CARD_PROD_REQUESTED; any code."
    )
    reason = _text(LONG_TEXT_MAX)
    dueDate = serializers.DateField(required=False)
    productionSite = _text(TEXT_MAX)
    inputFileName = _text(TEXT_MAX)
    issuerRequestId = _text(TEXT_MAX)
    shipment = ShipmentSchema(required=False)


class OperationSchema(serializers.Serializer):
    operationId = serializers.RegexField(
        rf"^[A-Za-z0-9_-]{{1,{OPERATION_ID_MAX}}}$", max_length=OPERATION_ID_MAX
    )
    operation = serializers.CharField(
        max_length=CODE_MAX, help_text="PRODUCE or STANDALONE_TRACKING; others are stored only."
    )
    status = serializers.CharField(
        max_length=SHORT_CODE_MAX, help_text="PENDING, SUCCESSFUL, FAILED."
    )
    startTime = serializers.DateTimeField()
    endTime = serializers.DateTimeField(required=False)
    cardId = serializers.RegexField(rf"^[A-Za-z0-9_-]{{1,{CARD_ID_MAX}}}$", max_length=CARD_ID_MAX)
    details = DetailsSchema(required=False)
    errorCode = _text(TEXT_MAX)
    error = _text(LONG_TEXT_MAX)
    inputFileName = _text(TEXT_MAX)
    issuerRequestId = _text(TEXT_MAX)


class NotificationBodySchema(serializers.Serializer):
    operations = serializers.ListField(
        child=OperationSchema(),
        min_length=1,
        max_length=settings.D1_WEBHOOK_MAX_OPERATIONS,
    )


def add_token_endpoint(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: describe D1's token endpoint, a django-oauth-toolkit view."""
    del generator, request, public
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
        "required": ["error"],
    }
    result.setdefault("paths", {})["/authz/d1/v1/oauth2/token"] = {
        "post": {
            "operationId": "d1_token",
            "summary": "D1 gets a bearer token for the notification webhook (SPEC §5.3)",
            "tags": ["D1 notifications"],
            "security": [{"d1ClientCredentials": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                                "scope": {"type": "string"},
                            },
                            "required": ["grant_type"],
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "A bearer token.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "access_token": {"type": "string"},
                                    "token_type": {"type": "string", "enum": ["Bearer"]},
                                    "expires_in": {"type": "integer"},
                                    "scope": {"type": "string"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                },
                                "required": ["access_token", "token_type", "expires_in"],
                            }
                        }
                    },
                },
                **{
                    status: {
                        "description": description,
                        "content": {"application/json": {"schema": error}},
                    }
                    for status, description in (
                        ("400", "Bad request (grant type, scope)."),
                        ("401", "Unknown client or wrong secret."),
                        ("403", "No client certificate, when one is required."),
                        ("429", "Too many token requests from this address."),
                    )
                },
            },
        }
    }
    return result


class D1CallerAuthenticationScheme(OpenApiAuthenticationExtension):
    """The webhook's bearer token, as the schema shows it."""

    target_class = "tracking.api.d1_auth.D1CallerAuthentication"
    name = "d1Bearer"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from POST /authz/d1/v1/oauth2/token (when required).",
        }


class ReadApiTokenScheme(OpenApiAuthenticationExtension):
    """The read API's token (tracking.ReadApiToken), as the schema shows it."""

    target_class = "tracking.api.authentication.ReadApiTokenAuthentication"
    name = "readApiToken"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: a read-API token (shown once when made; it expires).",
        }
