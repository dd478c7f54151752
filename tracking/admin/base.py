"""The one base class of every admin page, and the read-only base of what D1 sent.

`PortalModelAdmin` is django-unfold's ModelAdmin with the list lookup rule (a list filters only
through its own filters, personal fields only for those who may see them, see `security`), the
grant rule (rows of the issuers the user is granted only, `issuer_path`) and lists that never
count a whole table. Every ModelAdmin of the back office derives from it.
"""

from __future__ import annotations

from django.contrib.admin.options import ShowFacets
from unfold.admin import ModelAdmin
from unfold.paginator import InfinitePaginator

from tracking.admin.security import EvidenceAdminMixin, IssuerGrantMixin, ListLookupsMixin


class FastListMixin:
    """No COUNT(*) of the table on a page view: pages go on while there are rows."""

    paginator = InfinitePaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_disable_select_all = True
    list_filter_submit = True


class PortalModelAdmin(IssuerGrantMixin, ListLookupsMixin, FastListMixin, ModelAdmin):
    """Every list and page of the back office; rows of an issuer's only for its grant holders."""

    # The theme's list template asks for these on every row; a missing attribute costs a
    # dir() of the whole admin per lookup (Django's template engine), 100 a page.
    list_sections: tuple = ()


class EvidenceAdmin(EvidenceAdminMixin, PortalModelAdmin):
    """What D1 sent and what staff did: nobody adds, edits or deletes it."""

    list_before_template = "admin/tracking/includes/list_chips.html"
    list_fullwidth = True
