"""The portal's URLs plus the bare-view anchor of `bench/ingest.py`.

The anchor is the least a DRF view can do with D1's body: parse it and insert one row per item
(into `bench_raw`, made by the benchmark), on the same server, settings and middleware path as
the webhook. It checks nothing, deduplicates nothing and folds nothing.
"""

import json

from django.db import connection
from django.urls import path
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as portal_urlpatterns

INSERT = (
    "INSERT INTO bench_raw (card_id, fingerprint, payload, received_at) "
    "VALUES (%s, md5(%s), %s::jsonb, now())"
)


class NoAuthentication(BaseAuthentication):
    def authenticate(self, request):
        return None


class BareView(APIView):
    authentication_classes = [NoAuthentication]
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def post(self, request, issuer_id: str) -> Response:
        operations = json.loads(request._request.body)["operations"]
        rows = []
        for item in operations:
            text = json.dumps(item)
            rows.append((str(item.get("cardId", ""))[:48], text, text))
        with connection.cursor() as cursor:
            cursor.executemany(INSERT, rows)
        return Response(status=204)


bare_view = BareView.as_view()
bare_view.skips_staff_middleware = True  # served like the webhook (tracking.middleware.d1)

urlpatterns = [
    path("notifications/bench/<str:issuer_id>/cards", bare_view, name="bench-bare"),
    *portal_urlpatterns,
]
