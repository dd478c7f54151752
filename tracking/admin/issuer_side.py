"""The issuer's side in the back office: register an order file, look a card up at D1, and what
the order list and page show of registered, superseded and changed orders.

Pages hang off the orders admin (`order_urls`): `register/` (upload a CSV, see a preview and the
refused rows, then register the rest) and `look-up/` (ask D1 about any card and open its order).
Both are audited and need their permission (register orders; reconcile).
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass, field

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from tracking.admin import display as admin_display
from tracking.models import CardOrder, Issuer, OrderChange
from tracking.rules import CANCELLED_STATUSES
from tracking.services import order_queues
from tracking.services.audit import Actor
from tracking.services.card_operations import EXCEPTION_REASONS, card_orders
from tracking.services.look_up import LookUpInputError, card_look_up
from tracking.services.registration import (
    FIELDS,
    active_issuers,
    awaiting_first_event,
    orders_register,
    registration_check,
    state_summary,
)

REGISTER_PERMISSION = "tracking.register_cardorder"
LOOK_UP_PERMISSION = "tracking.reconcile_cardorder"
UPLOAD_SESSION_KEY = "tracking:registration-upload"
UPLOAD_MAX_BYTES = 20 * 1024 * 1024
PREVIEW_ROWS = 100
# D1's camelCase names are accepted as CSV headers too.
HEADER_ALIASES = {
    "issuerid": "issuer_id",
    "cardid": "card_id",
    "operationid": "operation_id",
    "issuerrequestid": "issuer_request_id",
    "inputfilename": "input_file_name",
    "duedate": "due_date",
}


# ---------------------------------------------------------------------------- list and page


def registered_badge(order: CardOrder) -> str:
    """A registered order with no events: says so plainly, never a production status."""
    return format_html(
        '{}<span class="bo-subtle block">{}</span>',
        admin_display.badge(_("Registered"), "neutral", icon="pending_actions"),
        _("Waiting for D1's first message"),
    )


def superseded_badge(order: CardOrder) -> str:
    if not order.superseded_by_id:
        return ""
    url = reverse("admin:tracking_cardorder_change", args=[order.superseded_by_id])
    return format_html(
        '<a class="bo-link block" href="{}">{}</a>',
        url,
        admin_display.badge(
            _("Replaced by a newer order"), "neutral", icon="switch_access_shortcut"
        ),
    )


def change_badge(order: CardOrder) -> str:
    """The latest pull & change result of the card, as a labelled badge."""
    if not order.change_result:
        return ""
    tone = {"accepted": "success", "rejected": "danger"}.get(order.change_result, "warning")
    label = order.change_type.replace("_", " ") or "Change"
    text = f"{label} {order.change_result}"
    if order.change_result == "unknown":
        text = _("%(change)s: unknown shape") % {"change": order.change_type or _("Change")}
    badge = admin_display.badge(text, tone, title=_("Pull & change: %(text)s") % {"text": text})
    awaiting = ""
    if order.cancel_accepted_at and (order.production_status not in CANCELLED_STATUSES):
        awaiting = format_html(
            '<span class="bo-subtle block">{}</span>', _("awaiting CARD_PROD_CANCELED")
        )
    # Its own line under the production status (the list has no pull & change column).
    return format_html('<span class="bo-change block">{}{}</span>', badge, awaiting)


def order_page_context(order: CardOrder, *, now) -> dict:
    """What the order page adds for the issuer's side (includes/card_operations.html)."""
    return {
        "awaiting_first_event": awaiting_first_event(order),
        "silent": order_queues.is_silent(order, now=now),
        "state_summary": state_summary(order),
        "exception_reason_text": EXCEPTION_REASONS.get(
            order.exception_reason, order.exception_reason
        ),
        "card_orders": card_orders(order),
        "changes": list(
            OrderChange.objects.filter(order=order)
            .select_related("event")
            .order_by("-created_at")[:20]
        ),
        "cancel_unconfirmed": bool(
            order.cancel_accepted_at and order.production_status not in CANCELLED_STATUSES
        ),
        "returned": order_queues.is_returned(order),
    }


# ---------------------------------------------------------------------------- urls


def order_urls(model_admin) -> list:
    wrap = model_admin.admin_site.admin_view
    return [
        path(
            "register/",
            wrap(_bound(register_view, model_admin)),
            name="tracking_cardorder_register",
        ),
        path(
            "look-up/",
            wrap(_bound(look_up_view, model_admin)),
            name="tracking_cardorder_look_up",
        ),
    ]


def _bound(view, model_admin):
    def bound(request, *args, **kwargs):
        return view(request, model_admin, *args, **kwargs)

    return bound


def _context(request, model_admin, **extra) -> dict:
    request.current_app = model_admin.admin_site.name
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        **extra,
    }


# ---------------------------------------------------------------------------- look-up


class LookUpForm(forms.Form):
    # The theme's own widgets: a plain input has no border in its stylesheet (invisible).
    issuer = forms.ChoiceField(label=_("Issuer"), widget=UnfoldAdminSelectWidget)
    card_id = forms.CharField(
        label=_("Card id (D1 cardId)"),
        max_length=48,
        help_text=_("As D1 knows it: 1 to 48 letters, digits, '-' or '_'."),
        widget=UnfoldAdminTextInputWidget(attrs={"autofocus": True, "autocomplete": "off"}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["issuer"].choices = [
            (i.issuer_id, str(i)) for i in Issuer.objects.filter(is_active=True)
        ]


def look_up_view(request: HttpRequest, model_admin):
    """Ask D1 about any card; a known answer opens its order (created when new)."""
    if not request.user.has_perm(LOOK_UP_PERMISSION):
        raise PermissionDenied
    form = LookUpForm(request.POST or None)
    result = None
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            result = card_look_up(
                issuer_id=form.cleaned_data["issuer"],
                card_id=form.cleaned_data["card_id"],
                actor=Actor.of_request(request),
            )
        except LookUpInputError as exc:
            error = str(exc)
        else:
            if result.order_id is not None:
                level = messages.ERROR if result.outcome == "error" else messages.SUCCESS
                messages.add_message(request, level, _answer_sentence(result))
                return HttpResponseRedirect(
                    reverse("admin:tracking_cardorder_change", args=[result.order_id])
                )
    context = _context(
        request,
        model_admin,
        title=_("Look up a card at D1"),
        subtitle=None,
        form=form,
        result=result,
        error=error,
    )
    return TemplateResponse(request, "admin/tracking/cardorder/look_up.html", context)


def _answer_sentence(result) -> str:
    if result.http_status != 200:
        answer = result.http_status or "nothing"
        return _("D1 answered %(answer)s for card %(card_id)s: %(error)s") % {
            "answer": answer,
            "card_id": result.card_id,
            "error": result.error,
        }
    items = []
    for item in result.operations:
        details = item.get("details") if isinstance(item.get("details"), dict) else {}
        shipment = details.get("shipment") if isinstance(details.get("shipment"), dict) else {}
        text = (
            f"{item.get('operation', '?')} {item.get('operationId', '?')}: "
            f"{item.get('status', '?')}, {details.get('status', 'no details.status')}"
        )
        if shipment.get("status"):
            text += f", carrier {shipment['status']}"
        items.append(text)
    verb = (
        _("new order created")
        if result.created
        else _("order %(outcome)s") % {"outcome": result.outcome}
    )
    return _("D1 answered 200 for card %(card_id)s (%(items)s); %(verb)s.") % {
        "card_id": result.card_id,
        "items": "; ".join(items) or _("no items"),
        "verb": verb,
    }


# ---------------------------------------------------------------------------- CSV registration


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("Order file (CSV)"),
        help_text=(
            _(
                "A header line, then one order per line: card_id (required), issuer_id, "
                "operation_id, issuer_request_id, input_file_name, due_date (YYYY-MM-DD)."
            )
        ),
    )
    issuer = forms.ChoiceField(
        label=_("Issuer of rows without issuer_id"),
        required=False,
        help_text=_("Optional."),
        widget=UnfoldAdminSelectWidget,
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["issuer"].choices = [("", "—")] + [
            (i.issuer_id, str(i)) for i in Issuer.objects.filter(is_active=True)
        ]


@dataclass
class ParsedFile:
    """A read order file: the rows to register and those refused, each with its line number."""

    valid: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    error: str = ""


def order_file_parse(content: bytes, *, default_issuer: str = "") -> ParsedFile:
    """Read an order file (CSV, UTF-8) and check each row as the API would."""
    parsed = ParsedFile()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        parsed.error = "The file is not UTF-8 text."
        return parsed
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        parsed.error = "The file is empty."
        return parsed
    columns = [HEADER_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    unknown = [h for h in columns if h not in FIELDS]
    if unknown:
        parsed.error = _("Unknown column(s): %(unknown)s. Expected: %(expected)s.") % {
            "unknown": ", ".join(unknown),
            "expected": ", ".join(FIELDS),
        }
        return parsed
    if "card_id" not in columns:
        parsed.error = "The file has no card_id column."
        return parsed
    rows = []
    for line_number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        row = {name: value.strip() for name, value in zip(columns, values, strict=False)}
        if len(values) > len(columns):
            row["__extra__"] = values[len(columns) :]
        if not row.get("issuer_id") and default_issuer:
            row["issuer_id"] = default_issuer
        rows.append((line_number, row))
        if len(rows) > settings.REGISTRATION_BULK_MAX:
            parsed.error = _("At most %(count)s orders per file; split the file.") % {
                "count": settings.REGISTRATION_BULK_MAX
            }
            return parsed
    issuers = active_issuers(r.get("issuer_id") for _line, r in rows)
    for line_number, row in rows:
        extra = row.pop("__extra__", None)
        data = {k: v for k, v in row.items() if v != ""}
        _checked, errors = registration_check(data, issuers=issuers)
        if extra:
            errors = {**errors, "non_field_errors": "more values than columns"}
        if errors:
            parsed.refused.append({"line": line_number, "row": row, "errors": errors})
        else:
            parsed.valid.append({"line": line_number, **data})
    return parsed


def register_view(request: HttpRequest, model_admin):
    """Upload an order file, preview it with its refused rows, then register the valid ones."""
    if not request.user.has_perm(REGISTER_PERMISSION):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("confirm"):
        return _register_confirm(request)
    form = UploadForm(request.POST or None, request.FILES or None)
    parsed = None
    token = ""
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > UPLOAD_MAX_BYTES:
            form.add_error(
                "file",
                _("The file is larger than %(size)s MB.")
                % {"size": UPLOAD_MAX_BYTES // 1024 // 1024},
            )
        else:
            parsed = order_file_parse(
                upload.read(), default_issuer=form.cleaned_data.get("issuer") or ""
            )
            if parsed.error:
                form.add_error("file", parsed.error)
                parsed = None
            elif parsed.valid:
                token = secrets.token_urlsafe(16)
                request.session[UPLOAD_SESSION_KEY] = {
                    "token": token,
                    "file": upload.name[:255],
                    "rows": [{k: v for k, v in r.items() if k != "line"} for r in parsed.valid],
                    "refused": len(parsed.refused),
                }
    context = _context(
        request,
        model_admin,
        title=_("Register orders from a file"),
        subtitle=None,
        form=form,
        parsed=parsed,
        preview=parsed.valid[:PREVIEW_ROWS] if parsed else [],
        token=token,
        columns=FIELDS,
        preview_rows=PREVIEW_ROWS,
    )
    return TemplateResponse(request, "admin/tracking/cardorder/register.html", context)


def _register_confirm(request: HttpRequest):
    upload = request.session.get(UPLOAD_SESSION_KEY) or {}
    if not upload or upload.get("token") != request.POST.get("token"):
        messages.error(request, _("That preview has expired; upload the file again."))
        return HttpResponseRedirect(reverse("admin:tracking_cardorder_register"))
    rows = upload["rows"]
    issuers = active_issuers(r.get("issuer_id") for r in rows)
    registrations = []
    for row in rows:
        registration, errors = registration_check(row, issuers=issuers)
        if errors:  # an issuer switched off since the preview
            messages.error(
                request, _("The file changed meaning since the preview; upload it again.")
            )
            return HttpResponseRedirect(reverse("admin:tracking_cardorder_register"))
        registrations.append(registration)
    with transaction.atomic():
        registered = orders_register(
            registrations=registrations,
            actor=Actor.of_request(request),
            details={"file": upload.get("file", ""), "refused": upload.get("refused", 0)},
        )
        created = sum(1 for r in registered if r.created)
    del request.session[UPLOAD_SESSION_KEY]
    messages.success(
        request,
        _("Registered %(count)s orders from %(file)s: %(new)s new, %(known)s already known.")
        % {
            "count": len(registered),
            "file": upload.get("file", "-"),
            "new": created,
            "known": len(registered) - created,
        }
        + (
            " " + _("%(refused)s refused rows were left out.") % {"refused": upload["refused"]}
            if upload.get("refused")
            else ""
        ),
    )
    return HttpResponseRedirect(
        reverse("admin:tracking_cardorder_changelist") + "?queue=registered"
    )
