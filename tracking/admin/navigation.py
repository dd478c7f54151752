"""The admin's sidebar and look: the queues staff work from, in the order they use them."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from tracking.selectors import order_queues

ORDERS_CHANGELIST = "admin:tracking_cardorder_changelist"

# Tailwind's blue scale: calmer than the theme's default purple for an all-day tool.
_BLUE = {
    "50": "oklch(97% .014 254.604)",
    "100": "oklch(93.2% .032 255.585)",
    "200": "oklch(88.2% .059 254.128)",
    "300": "oklch(80.9% .105 251.813)",
    "400": "oklch(70.7% .165 254.624)",
    "500": "oklch(62.3% .214 259.815)",
    "600": "oklch(54.6% .245 262.881)",
    "700": "oklch(48.8% .243 264.376)",
    "800": "oklch(42.4% .199 265.638)",
    "900": "oklch(37.9% .146 265.522)",
    "950": "oklch(28.2% .091 267.935)",
}


def primary_colors(request: HttpRequest) -> dict[str, str]:
    del request
    return dict(_BLUE)


def admin_stylesheet(request: HttpRequest) -> str:
    del request
    return static("tracking/admin.css")


def _url(name: str, query: str = "") -> str:
    try:
        url = reverse(name)
    except NoReverseMatch:
        return ""
    return f"{url}?{query}" if query else url


def _can_view(app_model: str) -> Callable[[HttpRequest], bool]:
    def check(request: HttpRequest) -> bool:
        return request.user.has_perm(f"tracking.view_{app_model}")

    return check


def _queue_active(queue: str) -> Callable[[HttpRequest], bool]:
    """Active when the orders list shows this queue (or no queue, for plain Orders)."""

    def check(request: HttpRequest) -> bool:
        orders_path = _url(ORDERS_CHANGELIST)
        if not orders_path or not request.path.startswith(orders_path):
            return False
        if queue == "":
            return "queue" not in request.GET
        return request.GET.get("queue") == queue

    return check


def _queue_items(section: str, view_orders) -> list[dict]:
    """The sidebar entries of the queues `order_queues.QUEUES` puts in `section`."""
    return [
        {
            "title": queue.nav or queue.title,
            "icon": queue.icon,
            "link": _url(ORDERS_CHANGELIST, f"queue={queue.key}"),
            "permission": view_orders,
            "active": _queue_active(queue.key),
        }
        for queue in order_queues.queues_in(section)
    ]


def _path_active(name: str, *, when: Callable[[HttpRequest], bool] | None = None):
    def check(request: HttpRequest) -> bool:
        path = _url(name)
        return bool(path) and request.path.startswith(path) and (when is None or when(request))

    return check


# Every key the theme's sidebar template reads, so that none is a failed lookup (each of which
# costs the template engine a dir() of the dict) on every page.
_GROUP_DEFAULTS = {"collapsible": False}
_ITEM_DEFAULTS = {"link_callback": None, "link_attrs": None, "icon_template": None}


def sidebar_navigation(request: HttpRequest) -> list[dict]:
    """The sidebar groups; items the user may not view are hidden by unfold."""
    return [
        {**_GROUP_DEFAULTS, **group, "items": [{**_ITEM_DEFAULTS, **i} for i in group["items"]]}
        for group in _sidebar_groups(request)
    ]


def _sidebar_groups(request: HttpRequest) -> list[dict]:
    del request
    view_orders = _can_view("cardorder")
    reconcile_attempts = _url("admin:tracking_reconcileattempt_changelist")
    reconciliation = (
        {
            "title": _("Calls to D1"),
            "icon": "sync",
            "link": reconcile_attempts,
            "permission": _can_view("reconcileattempt"),
            "active": _path_active("admin:tracking_reconcileattempt_changelist"),
        }
        if reconcile_attempts
        else None
    )
    return [
        {
            "title": _("Card orders"),
            "separator": False,
            "items": [
                {
                    "title": _("Dashboard"),
                    "icon": "space_dashboard",
                    "link": _url("admin:index"),
                },
                {
                    "title": _("Orders"),
                    "icon": "credit_card",
                    "link": _url(ORDERS_CHANGELIST),
                    "permission": view_orders,
                    "active": _queue_active(""),
                },
                *_queue_items(order_queues.WORK, view_orders),
            ],
        },
        {
            "title": _("Insight"),
            "separator": True,
            "items": [
                {
                    "title": _("Production files"),
                    "icon": "description",
                    "link": _url("admin:tracking_productionfile_changelist"),
                    "permission": view_orders,
                    "active": _path_active(
                        "admin:tracking_productionfile_changelist",
                        when=lambda r: "/heatmap/" not in r.path,
                    ),
                },
                {
                    "title": _("Sites and stages"),
                    "icon": "grid_on",
                    "link": _url("admin:tracking_productionfile_heatmap"),
                    "permission": view_orders,
                    "active": _path_active("admin:tracking_productionfile_heatmap"),
                },
            ],
        },
        {
            "title": _("The issuer's side"),
            "separator": True,
            "items": [
                *_queue_items(order_queues.ISSUER_SIDE, view_orders),
                {
                    "title": _("Look up at D1"),
                    "icon": "travel_explore",
                    "link": _url("admin:tracking_cardorder_look_up"),
                    "permission": lambda r: r.user.has_perm("tracking.reconcile_cardorder"),
                    "active": _path_active("admin:tracking_cardorder_look_up"),
                },
                {
                    "title": _("Register orders"),
                    "icon": "upload_file",
                    "link": _url("admin:tracking_cardorder_register"),
                    "permission": lambda r: r.user.has_perm("tracking.register_cardorder"),
                    "active": _path_active("admin:tracking_cardorder_register"),
                },
            ],
        },
        {
            "title": _("After shipment"),
            "separator": True,
            "items": _queue_items(order_queues.AFTER_SHIPMENT, view_orders),
        },
        {
            "title": _("Reconciliation"),
            "separator": True,
            "items": [
                *_queue_items(order_queues.RECONCILIATION, view_orders),
                *([reconciliation] if reconciliation else []),
            ],
        },
        {
            "title": _("What D1 sent"),
            "separator": True,
            "items": [
                {
                    "title": _("D1 messages"),
                    "icon": "inbox",
                    "link": _url("admin:tracking_notificationdelivery_changelist"),
                    "permission": _can_view("notificationdelivery"),
                    "active": _path_active(
                        "admin:tracking_notificationdelivery_changelist",
                        when=lambda r: "refused" not in r.GET,
                    ),
                },
                {
                    "title": _("Refused D1 messages"),
                    "icon": "block",
                    "link": _url("admin:tracking_notificationdelivery_changelist", "refused=yes"),
                    "permission": _can_view("notificationdelivery"),
                    "active": _path_active(
                        "admin:tracking_notificationdelivery_changelist",
                        when=lambda r: "refused" in r.GET,
                    ),
                },
                {
                    "title": _("Refused calls"),
                    "icon": "gpp_bad",
                    "link": _url("admin:tracking_refusaltally_changelist"),
                    "permission": _can_view("refusaltally"),
                    "active": _path_active("admin:tracking_refusaltally_changelist"),
                },
                {
                    "title": _("Events"),
                    "icon": "list_alt",
                    "link": _url("admin:tracking_operationevent_changelist"),
                    "permission": _can_view("operationevent"),
                    "active": _path_active("admin:tracking_operationevent_changelist"),
                },
            ],
        },
        {
            "title": _("Configuration"),
            "separator": True,
            "items": [
                {
                    "title": _("Issuers"),
                    "icon": "account_balance",
                    "link": _url("admin:tracking_issuer_changelist"),
                    "permission": _can_view("issuer"),
                    "active": _path_active("admin:tracking_issuer_changelist"),
                },
                {
                    "title": _("Event endpoints"),
                    "icon": "webhook",
                    "link": _url("admin:tracking_eventendpoint_changelist"),
                    "permission": _can_view("eventendpoint"),
                    "active": _path_active("admin:tracking_eventendpoint_changelist"),
                },
                {
                    "title": _("Event deliveries"),
                    "icon": "outbox",
                    "link": _url("admin:tracking_eventdelivery_changelist"),
                    "permission": _can_view("eventdelivery"),
                    "active": _path_active("admin:tracking_eventdelivery_changelist"),
                },
                {
                    "title": _("Users"),
                    "icon": "person",
                    "link": _url("admin:auth_user_changelist"),
                    "permission": lambda r: r.user.has_perm("auth.view_user"),
                    "active": _path_active("admin:auth_user_changelist"),
                },
                {
                    "title": _("Groups"),
                    "icon": "group",
                    "link": _url("admin:auth_group_changelist"),
                    "permission": lambda r: r.user.has_perm("auth.view_group"),
                    "active": _path_active("admin:auth_group_changelist"),
                },
                {
                    "title": _("My language and time zone"),
                    "icon": "translate",
                    "link": _url("admin:tracking_staffpreference_mine"),
                    "permission": lambda r: r.user.is_staff,
                    "active": _path_active("admin:tracking_staffpreference_changelist"),
                },
            ],
        },
    ]
