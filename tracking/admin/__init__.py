"""The back office, on django-unfold: every page staff use, registered on the admin site.

Django's autodiscovery imports this package, so each module imported below registers its
pages; a new page module is added here. The modules:

- `base`: the one base class of every page (`PortalModelAdmin`) and of the read-only evidence;
- `orders`: the orders list with its queues and the order page; `timeline` and `display`
  present what the order page and the lists show;
- `d1_messages`: what D1 sent (deliveries, events, refused calls); `reconcile`: calls to D1;
- `issuers`, `issuer_side` (registering orders, looking a card up at D1), `insight` (production
  files, sites and stages);
- `users` and `audit`: staff accounts, groups, TOTP devices, read-API tokens, D1 clients and
  the audit trail (`users` replaces the stock pages of auth and django-otp, importing them
  first so that they exist to be replaced, whatever the order of INSTALLED_APPS);
- `preferences`: each user's own language and time zone;
- `events`: the issuers' event endpoints, their deliveries and the outbound events;
- `navigation` (the sidebar), `dashboard` (the front page), `filters`, `security`.
"""

from tracking.admin import (  # noqa: F401
    audit,
    d1_messages,
    events,
    insight,
    issuers,
    orders,
    preferences,
    reconcile,
    users,
)
