"""The orders list exported: the current list (filters, queue, search) as CSV or .xlsx, audited."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify

from tracking.domain.masking import can_see_personal, personal_fields
from tracking.models import CardOrder
from tracking.selectors.export import (
    XLSX_CONTENT_TYPE,
    orders_csv_lines,
    orders_xlsx_file,
    xlsx_blocks,
)
from tracking.services.audit import Actor, audit_actor


class OrderExportMixin:
    """The orders admin's export views (their URLs are the admin's `get_urls`)."""

    def _export_scope(self, request: HttpRequest) -> dict:
        """What either export writes: the list's rows as filtered, what this reader may see,
        and whether the Stuck columns come along. Refuses a reader who may not view orders."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        queryset = self.get_changelist_instance(request).get_queryset(request)
        stuck = request.GET.get("queue") == "stuck" or request.GET.get("stage_age") == "stuck"
        return {
            "queryset": queryset,
            "chunk_size": settings.ADMIN_EXPORT_CHUNK_SIZE,
            "masked": set() if can_see_personal(request.user) else set(personal_fields(CardOrder)),
            "stuck": stuck,
        }

    def export_view(self, request: HttpRequest):
        """The current list (its filters, queue and search) as CSV, streamed."""
        lines = orders_csv_lines(**self._export_scope(request))
        lines = orders_csv_audited(
            lines,
            actor=Actor.of_request(request),
            filters={key: request.GET.getlist(key) for key in sorted(request.GET)},
        )
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{export_file_name(request.GET, now=timezone.now())}"'
        )
        return response

    def export_xlsx_view(self, request: HttpRequest):
        """The current list as an .xlsx workbook, written in constant memory, then streamed."""
        file_path, rows = orders_xlsx_file(**self._export_scope(request))
        audit_actor(
            Actor.of_request(request),
            action="order.export",
            targets=[None],
            details={
                "filters": {key: request.GET.getlist(key) for key in sorted(request.GET)},
                "rows": rows,
                "complete": True,
                "format": "xlsx",
            },
        )
        response = StreamingHttpResponse(xlsx_blocks(file_path), content_type=XLSX_CONTENT_TYPE)
        name = export_file_name(request.GET, now=timezone.now()).removesuffix(".csv") + ".xlsx"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Content-Length"] = str(os.path.getsize(file_path))
        return response


def export_file_name(params, *, now: dt.datetime) -> str:
    """card-orders-stuck-carrier-ups-20261130-0231.csv: the list, its filters, the time."""
    queue = params.get("queue", "")
    parts = ["card-orders", queue or "all"]
    for name, value in sorted(params.items()):
        if name in ("queue", "p", "o", "e") or not value:
            continue
        parts.append(f"{name}-{value}")
    slug = "-".join(slugify(part) for part in parts if slugify(part))[:150]
    return f"{slug}-{timezone.localtime(now):%Y%m%d-%H%M}.csv"


def orders_csv_audited(lines: Iterable[str], *, actor: Actor, filters: dict) -> Iterator[str]:
    """Pass the CSV lines through, then audit who exported, with which filters, how many rows.

    Written when the stream ends, finished or cut off (`complete` says which), so the row
    count is the one the reader got.
    """
    rows = -1  # the header line is not a row
    complete = False
    try:
        for line in lines:
            rows += 1
            yield line
        complete = True
    finally:
        audit_actor(
            actor,
            action="order.export",
            targets=[None],
            details={"filters": filters, "rows": max(rows, 0), "complete": complete},
        )
