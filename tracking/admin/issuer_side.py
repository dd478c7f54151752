"""The issuer's side in the back office: register an order file, look a card up at D1, and what
the order list and page show of registered, superseded and changed orders.

Pages hang off the orders admin (`order_urls`): `register/` (upload a CSV, see a preview and the
refused rows and conflicts, then register the rest) and `look-up/` (ask D1 about any card and
open its order; rate-limited). Both are audited and need their permission (register orders;
reconcile). Two read-only lists keep the rest for staff: registration conflicts, and the
ask-D1 jobs with their progress.
"""

from __future__ import annotations

import hashlib
import secrets

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from tracking.admin import display as admin_display
from tracking.admin.base import EvidenceAdmin
from tracking.admin.order_file import order_file_parse
from tracking.domain import conditions
from tracking.domain.d1_items import details_of, shipment_of
from tracking.domain.statuses import CANCELLED_STATUSES
from tracking.intake.card_operations import EXCEPTION_REASONS, card_orders
from tracking.models import CardOrder, D1AskJob, OrderChange, RegistrationConflict
from tracking.selectors import order_queues
from tracking.selectors.order_representation import awaiting_first_event, state_summary
from tracking.services.audit import Actor
from tracking.services.d1_asks import D1AskRefused
from tracking.services.issuer_grants import issuer_choices
from tracking.services.look_up import LookUpInputError, card_look_up
from tracking.services.registration import orders_register
from tracking.services.registration_rows import (
    FIELDS,
    registrable_issuers,
    registration_check,
)

REGISTER_PERMISSION = "tracking.register_cardorder"
LOOK_UP_PERMISSION = "tracking.reconcile_cardorder"
UPLOAD_SESSION_KEY = "tracking:registration-upload"
PREVIEW_ROWS = 100


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
        "returned": conditions.is_returned(order),
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
    issuer = forms.ChoiceField(label=gettext_lazy("Issuer"), widget=UnfoldAdminSelectWidget)
    card_id = forms.CharField(
        label=gettext_lazy("Card id (D1 cardId)"),
        max_length=48,
        help_text=gettext_lazy("As D1 knows it: 1 to 48 letters, digits, '-' or '_'."),
        widget=UnfoldAdminTextInputWidget(attrs={"autofocus": True, "autocomplete": "off"}),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only the issuers the user is granted: another's is refused as an unknown choice.
        self.fields["issuer"].choices = issuer_choices(user)


def look_up_view(request: HttpRequest, model_admin):
    """Ask D1 about any card; a known answer opens its order (created when new)."""
    if not request.user.has_perm(LOOK_UP_PERMISSION):
        raise PermissionDenied
    form = LookUpForm(request.POST or None, user=request.user)
    result = None
    error = ""
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            result = card_look_up(
                issuer_id=form.cleaned_data["issuer"],
                card_id=form.cleaned_data["card_id"],
                actor=Actor.of_request(request),
            )
        except LookUpInputError as exc:
            error = str(exc)
        except D1AskRefused as exc:
            error = str(exc)
            status = 429
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
    return TemplateResponse(
        request, "admin/tracking/cardorder/look_up.html", context, status=status
    )


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
        details, shipment = details_of(item), shipment_of(item)
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


def _upload_limit_text() -> str:
    return f"{settings.REGISTRATION_UPLOAD_MAX_BYTES / 1024 / 1024:g} MB"


class UploadForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("Order file (CSV)"),
        help_text=gettext_lazy(
            "A header line, then one order per line: card_id (required), issuer_id, "
            "operation_id, issuer_request_id, input_file_name, due_date (YYYY-MM-DD or "
            "YYYY/MM/DD). UTF-8, Shift_JIS (Excel's CSV) or UTF-16; other columns are ignored."
        ),
    )
    issuer = forms.ChoiceField(
        label=gettext_lazy("Issuer of rows without issuer_id"),
        required=False,
        help_text=gettext_lazy("Optional."),
        widget=UnfoldAdminSelectWidget,
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = format_lazy(
            "{} {}",
            self.fields["file"].help_text,
            _("At most %(size)s (the proxy's limit for the staff host).")
            % {"size": _upload_limit_text()},
        )
        self.fields["issuer"].choices = [("", "—"), *issuer_choices(user)]


def register_view(request: HttpRequest, model_admin):
    """Upload an order file, preview it with its refused rows, then register the valid ones."""
    if not request.user.has_perm(REGISTER_PERMISSION):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("confirm"):
        return _register_confirm(request)
    form = UploadForm(request.POST or None, request.FILES or None, user=request.user)
    parsed = None
    token = ""
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > settings.REGISTRATION_UPLOAD_MAX_BYTES:
            form.add_error(
                "file",
                _("The file is larger than %(size)s.") % {"size": _upload_limit_text()},
            )
        else:
            content = upload.read()
            parsed = order_file_parse(
                content, user=request.user, default_issuer=form.cleaned_data.get("issuer") or ""
            )
            if parsed.error:
                form.add_error("file", parsed.error)
                parsed = None
            elif parsed.valid:
                token = secrets.token_urlsafe(16)
                request.session[UPLOAD_SESSION_KEY] = {
                    "token": token,
                    "file": upload.name[:255],
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "encoding": parsed.encoding,
                    "rows": [{k: v for k, v in r.items() if k != "line"} for r in parsed.valid],
                    "lines": [r["line"] for r in parsed.valid],
                    "refused": [
                        {"line": r["line"], "fields": r["fields"]} for r in parsed.refused[:1000]
                    ],
                    "refused_count": len(parsed.refused),
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
    issuers = registrable_issuers(user=request.user, issuer_ids=(r.get("issuer_id") for r in rows))
    registrations = []
    for row in rows:
        registration, errors = registration_check(row, issuers=issuers)
        if errors:  # an issuer switched off since the preview
            messages.error(
                request, _("The file changed meaning since the preview; upload it again.")
            )
            return HttpResponseRedirect(reverse("admin:tracking_cardorder_register"))
        registrations.append(registration)
    name = upload.get("file", "")
    with transaction.atomic():
        registered = orders_register(
            registrations=registrations,
            actor=Actor.of_request(request),
            details={
                "file": name,
                "file_sha256": upload.get("sha256", ""),
                "encoding": upload.get("encoding", ""),
            },
            refused=upload.get("refused", []),
            source=f"upload {name}"[:255],
        )
        created = sum(1 for r in registered if r.created)
    conflicts = sum(1 for r in registered if r.conflict)
    del request.session[UPLOAD_SESSION_KEY]
    refused = upload.get("refused_count", 0)
    text = _(
        "Registered %(rows)s orders from %(file)s: %(created)s new, %(known)s already known."
    ) % {
        "rows": len(registered) - conflicts,
        "file": name or _("the file"),
        "created": created,
        "known": len(registered) - created - conflicts,
    }
    if conflicts:
        text += " " + _(
            "%(count)s rows disagreed with stored orders and were kept as conflicts."
        ) % {"count": conflicts}
    if refused:
        text += " " + _("%(count)s refused rows were left out.") % {"count": refused}
    (messages.warning if conflicts else messages.success)(request, text)
    return HttpResponseRedirect(
        reverse("admin:tracking_cardorder_changelist") + "?queue=registered"
    )


# ---------------------------------------------------------------------------- kept for staff


@admin.register(RegistrationConflict)
class RegistrationConflictAdmin(EvidenceAdmin):
    """Registrations that disagreed with a stored order: the order kept its value, this one."""

    list_display = [
        "created_at",
        "order_link",
        "field_name",
        "stored_value",
        "registered_value",
        "username",
        "source",
    ]
    list_filter = ["field_name"]
    search_fields = ["=order__card_id", "=order__operation_id", "=registered_value"]
    list_select_related = ["order", "order__issuer"]
    fields = list_display
    readonly_fields = list_display

    @admin.display(description=gettext_lazy("order"))
    def order_link(self, conflict: RegistrationConflict) -> str:
        order = conflict.order
        url = reverse("admin:tracking_cardorder_change", args=[order.pk])
        label = f"{order.issuer.issuer_id} · {order.card_id} · {order.operation_id or '—'}"
        return format_html('<a class="bo-link" href="{}">{}</a>', url, label)


@admin.register(D1AskJob)
class D1AskJobAdmin(EvidenceAdmin):
    """ "Ask D1 now" on many orders: one job each, with its progress."""

    list_display = [
        "__str__",
        "status",
        "progress",
        "selected",
        "total",
        "done",
        "failed",
        "username",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    fields = [
        "status",
        "progress",
        "selected",
        "total",
        "done",
        "failed",
        "username",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, job: D1AskJob) -> str:
        percent = round(100 * job.walked / job.total) if job.total else 100
        return format_html(
            '<progress max="{}" value="{}" aria-label="{}"></progress> {} %',
            job.total or 1,
            job.walked if job.total else 1,
            _("%(walked)s of %(total)s orders asked") % {"walked": job.walked, "total": job.total},
            percent,
        )
