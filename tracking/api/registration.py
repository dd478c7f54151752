"""`POST /api/v1/orders/`: an integration registers the orders its issuer placed.

One order (a JSON object) answers 201 with the order when it is new, 200 when it was already
there, 409 naming each field when it disagrees with the stored order, and 400 naming each wrong
field. A list of up to REGISTRATION_BULK_MAX orders registers its valid rows in one transaction
and lists every other row with its index, field and reason (`refused`, `conflicts`); 400 only
when no row could be registered. The body is read by the webhook's bounded JSON parser, so no
content (NUL, lone surrogates, nesting 100,000 deep) answers 500. Needs the "register orders"
permission (`tracking.register_cardorder`), by token or session.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from tracking.domain.validation import json_body_parse
from tracking.services.audit import Actor
from tracking.services.registration import Registered, orders_register
from tracking.services.registration_rows import registrable_issuers, registration_check

REGISTER_PERMISSION = "tracking.register_cardorder"


class CanRegisterOrders(BasePermission):
    """Holders of the "register orders" permission; viewers do not have it."""

    message = "Registering orders needs the 'register orders' permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(REGISTER_PERMISSION))


class BoundedJSONParser(JSONParser):
    """JSON read by the webhook's parser: deep nesting, NUL and bytes that are not UTF-8 become
    per-row refusals instead of a RecursionError or a 500."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            return json_body_parse(raw)
        except RecursionError as exc:
            raise ParseError("The body is nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"The body is not valid JSON: {exc}.") from exc


class RegistrationSchema(serializers.Serializer):
    """The body of one registration (documentation; `registration_check` decides)."""

    issuer_id = serializers.CharField(min_length=10, max_length=10)
    card_id = serializers.RegexField(r"^[A-Za-z0-9_-]{1,48}$", max_length=48)
    operation_id = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$", max_length=64, required=False)
    issuer_request_id = serializers.CharField(max_length=255, required=False)
    input_file_name = serializers.CharField(max_length=255, required=False)
    due_date = serializers.DateField(required=False)


BULK_ANSWER = inline_serializer(
    "RegistrationBulkAnswer",
    {
        "created": serializers.IntegerField(),
        "existing": serializers.IntegerField(),
        "refused": serializers.ListField(child=serializers.DictField()),
        "conflicts": serializers.ListField(child=serializers.DictField()),
        "orders": inline_serializer(
            "RegisteredOrder",
            {
                "id": serializers.IntegerField(),
                "issuer_id": serializers.CharField(),
                "card_id": serializers.CharField(),
                "operation_id": serializers.CharField(),
                "created": serializers.BooleanField(),
            },
            many=True,
        ),
    },
)


class OrderRegistrationMixin:
    """The `create` action of the orders viewset: registration, one order or a list."""

    def get_permissions(self):
        if self.action == "create":
            return [CanRegisterOrders()]
        return super().get_permissions()

    def get_parsers(self):
        # Only `create` reads a body on this viewset.
        others = [p for p in super().get_parsers() if not isinstance(p, JSONParser)]
        return [BoundedJSONParser(), *others]

    @extend_schema(
        summary="Register orders the issuer placed (one object, or a list of them)",
        request=RegistrationSchema,
        responses={
            201: OpenApiResponse(description="New order (one) or at least one new (list)."),
            200: OpenApiResponse(
                description="Already registered or known from D1; for a list, the refused and "
                "conflicting rows by index, field and reason."
            ),
            400: OpenApiResponse(description="Bad input: each wrong field named (per row)."),
            409: OpenApiResponse(
                description="The order is stored with another issuer_request_id, "
                "input_file_name or due_date: each field named, nothing changed."
            ),
            403: OpenApiResponse(description="No 'register orders' permission."),
        },
        examples=[
            OpenApiExample(
                "One order",
                value={
                    "issuer_id": "ISSUERX001",
                    "card_id": "card-000123",
                    "operation_id": "op-7f3c9a12e4b54d01",
                    "issuer_request_id": "req-2026-03-02-0001",
                    "input_file_name": "ORDERS_20260302_01.csv",
                    "due_date": "2026-03-05",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        data = request.data
        if isinstance(data, list):
            return self._create_many(request, data)
        if not isinstance(data, dict):
            return Response(
                {"non_field_errors": ["Send one order (a JSON object) or a list of them."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        registration, errors = registration_check(
            data,
            issuers=registrable_issuers(
                user=request.user, issuer_ids=[data.get("issuer_id")], token=request.auth
            ),
        )
        if errors:
            return Response(_as_lists(errors), status=status.HTTP_400_BAD_REQUEST)
        with transaction.atomic():
            (registered,) = orders_register(
                registrations=[registration], actor=Actor.of_request(request)
            )
        if registered.conflict:
            return Response(
                {
                    "non_field_errors": [
                        "This order is already stored with other values; nothing was changed."
                    ],
                    "id": registered.order_id,
                    "conflicts": _conflict_fields(registered),
                },
                status=status.HTTP_409_CONFLICT,
            )
        order = self.get_queryset().get(pk=registered.order_id)
        body = self.get_serializer_class()(order, context=self.get_serializer_context()).data
        return Response(
            body, status=status.HTTP_201_CREATED if registered.created else status.HTTP_200_OK
        )

    def _create_many(self, request: Request, rows: list) -> Response:
        limit = settings.REGISTRATION_BULK_MAX
        if not rows:
            return Response(
                {"non_field_errors": ["The list of orders is empty."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if len(rows) > limit:
            return Response(
                {
                    "non_field_errors": [
                        f"At most {limit} orders per request; this one has {len(rows)}."
                    ]
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        issuers = registrable_issuers(
            user=request.user,
            issuer_ids=(r.get("issuer_id") for r in rows if isinstance(r, dict)),
            token=request.auth,
        )
        registrations, indexes, refused = [], [], []
        for index, row in enumerate(rows):
            registration, errors = registration_check(row, issuers=issuers)
            if errors:
                refused.append({"index": index, "errors": _as_lists(errors)})
            else:
                registrations.append(registration)
                indexes.append(index)
        if not registrations:
            return Response(
                {
                    "non_field_errors": [
                        f"None of the {len(rows)} orders is valid; none was registered."
                    ],
                    "rows": refused,
                    "refused": refused,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        with transaction.atomic():
            registered = orders_register(
                registrations=registrations,
                actor=Actor.of_request(request),
                refused=[
                    {"index": r["index"], "fields": sorted(r["errors"])} for r in refused[:1000]
                ],
            )
        created = sum(1 for r in registered if r.created)
        conflicts = [
            {"index": index, "id": r.order_id, "conflicts": _conflict_fields(r)}
            for index, r in zip(indexes, registered, strict=True)
            if r.conflict
        ]
        body = {
            "created": created,
            "existing": len(registered) - created - len(conflicts),
            "refused": refused,
            "conflicts": conflicts,
            "orders": [
                {
                    "index": index,
                    "id": r.order_id,
                    "issuer_id": r.registration.issuer_id,
                    "card_id": r.registration.card_id,
                    "operation_id": r.registration.operation_id,
                    "created": r.created,
                }
                for index, r in zip(indexes, registered, strict=True)
                if not r.conflict
            ],
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def _conflict_fields(registered: Registered) -> dict[str, dict[str, str]]:
    """Each disagreeing field with the value kept and the value refused."""
    return {
        name: {"stored": stored, "registered": given, "reason": "differs from the stored value"}
        for name, (stored, given) in sorted(registered.conflict.items())
    }


def _as_lists(errors: dict[str, str]) -> dict[str, list[str]]:
    """DRF's error shape: each field name with a list of messages."""
    return {name: [message] for name, message in errors.items()}
