"""`POST /api/v1/orders/`: an integration registers the orders its issuer placed.

One order (a JSON object) answers 201 with the order when it is new and 200 when it was already
there; a list of up to REGISTRATION_BULK_MAX orders is registered in one transaction, or not at
all when any row is wrong (400 naming each bad row and field). Needs the "register orders"
permission (`tracking.register_cardorder`), by token or session.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from tracking.services.audit import Actor
from tracking.services.issuer_grants import active_issuers_granted
from tracking.services.registration import (
    orders_register,
    registration_check,
)

REGISTER_PERMISSION = "tracking.register_cardorder"


class CanRegisterOrders(BasePermission):
    """Holders of the "register orders" permission; viewers do not have it."""

    message = "Registering orders needs the 'register orders' permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(REGISTER_PERMISSION))


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

    @extend_schema(
        summary="Register orders the issuer placed (one object, or a list of them)",
        request=RegistrationSchema,
        responses={
            201: OpenApiResponse(description="New order (one) or at least one new (list)."),
            200: OpenApiResponse(description="Already registered or known from D1."),
            400: OpenApiResponse(description="Bad input: each wrong field named (per row)."),
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
        # Only the issuers the caller is granted: another's is refused as an unknown one.
        issuers = active_issuers_granted(request.user, [data.get("issuer_id")], token=request.auth)
        registration, errors = registration_check(data, issuers=issuers)
        if errors:
            return Response(_as_lists(errors), status=status.HTTP_400_BAD_REQUEST)
        with transaction.atomic():
            (registered,) = orders_register(
                registrations=[registration], actor=Actor.of_request(request)
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
        issuers = active_issuers_granted(
            request.user,
            (r.get("issuer_id") for r in rows if isinstance(r, dict)),
            token=request.auth,
        )
        registrations, bad = [], []
        for index, row in enumerate(rows):
            registration, errors = registration_check(row, issuers=issuers)
            if errors:
                bad.append({"index": index, "errors": _as_lists(errors)})
            else:
                registrations.append(registration)
        if bad:
            return Response(
                {
                    "non_field_errors": [
                        f"{len(bad)} of {len(rows)} orders are not valid; none was registered."
                    ],
                    "rows": bad,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        with transaction.atomic():
            registered = orders_register(
                registrations=registrations, actor=Actor.of_request(request)
            )
        created = sum(1 for r in registered if r.created)
        body = {
            "created": created,
            "existing": len(registered) - created,
            "orders": [
                {
                    "id": r.order_id,
                    "issuer_id": r.registration.issuer_id,
                    "card_id": r.registration.card_id,
                    "operation_id": r.registration.operation_id,
                    "created": r.created,
                }
                for r in registered
            ],
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def _as_lists(errors: dict[str, str]) -> dict[str, list[str]]:
    """DRF's error shape: each field name with a list of messages."""
    return {name: [message] for name, message in errors.items()}
