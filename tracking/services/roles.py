"""Staff roles as Django groups: viewers read, operators act on orders, administrators configure.

| group          | may                                                                       |
|----------------|---------------------------------------------------------------------------|
| viewers        | view orders, events, deliveries, issuers (personal fields masked)         |
| operators      | the above unmasked, plus reconcile now, replay and acknowledge an order,  |
|                | look a card up at D1 and register orders                                  |
| administrators | the above, plus issuers, D1 clients, users, TOTP devices, login lockouts, |
|                | event endpoints (replay, rotate), read-API tokens, the audit trail and    |
|                | configuration history (never superuser status, the administrators group, |
|                | or another's password or devices: tracking/admin/users.py)                |

A role says what a user may do; its grant (`tracking.services.issuer_grants`) says for which
issuers: superusers have every issuer, everyone else only those granted to them.

Nobody, superusers included, may add, change or delete events, deliveries or audit entries:
no group holds those permissions and the admin and API refuse them regardless.
`roles_ensure` makes the groups hold exactly these permissions; it runs after every `migrate`
and from `manage.py setup_roles`, so it is idempotent.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction

VIEWERS = "viewers"
OPERATORS = "operators"
ADMINISTRATORS = "administrators"

# tracking models only administrators see (configuration, credentials, the audit trail).
_ADMIN_ONLY_MODELS = {
    "d1client",
    "auditentry",
    "historicalissuer",
    "historicald1client",
    "readapitoken",
    "issuergrant",
}
# Evidence: never added, changed or deleted by anyone.
EVIDENCE_MODELS = {
    "operationevent",
    "notificationdelivery",
    "refusaltally",
    "auditentry",
    "outboundevent",
    "eventdelivery",
    "deliveryattempt",
}

OPERATOR_EXTRA = [
    "tracking.reconcile_cardorder",
    "tracking.replay_cardorder",
    "tracking.acknowledge_cardorder",
    "tracking.view_personal_fields",
    "tracking.register_cardorder",
]
ADMINISTRATOR_EXTRA = [
    *(f"tracking.{verb}_issuer" for verb in ("add", "change", "delete")),
    *(f"tracking.{verb}_d1client" for verb in ("add", "change", "delete", "view")),
    "tracking.view_auditentry",
    *(f"tracking.{verb}_readapitoken" for verb in ("add", "delete", "view")),
    "tracking.view_historicalissuer",
    "tracking.view_historicald1client",
    # Outbound events: the issuers' endpoints, their secrets and replays.
    *(f"tracking.{verb}_eventendpoint" for verb in ("add", "change", "delete")),
    "tracking.replay_eventendpoint",
    "tracking.rotate_eventendpoint",
    *(f"auth.{verb}_user" for verb in ("add", "change", "delete", "view")),
    "auth.view_group",
    *(f"otp_totp.{verb}_totpdevice" for verb in ("add", "change", "delete", "view")),
    "oauth2_provider.view_application",
    "oauth2_provider.view_accesstoken",
    "oauth2_provider.delete_accesstoken",
    "axes.view_accessattempt",
    "axes.delete_accessattempt",
    "axes.view_accessfailurelog",
    "axes.view_accesslog",
]


def _viewer_permissions() -> list[str]:
    # Every tracking model's view permission, so models added later are readable by viewers.
    return [
        f"tracking.view_{model._meta.model_name}"
        for model in apps.get_app_config("tracking").get_models()
        if model._meta.model_name not in _ADMIN_ONLY_MODELS
    ]


def role_permissions() -> dict[str, list[str]]:
    """Each group's permissions as "app_label.codename"."""
    viewers = _viewer_permissions()
    operators = [*viewers, *OPERATOR_EXTRA]
    return {
        VIEWERS: viewers,
        OPERATORS: operators,
        ADMINISTRATORS: [*operators, *ADMINISTRATOR_EXTRA],
    }


def roles_ensure() -> dict[str, Group]:
    """Create the three groups and give each exactly its permissions; return them by name.

    Creates missing permission rows first (they normally appear after `migrate`). Permissions
    of apps that are not installed are skipped. Changes to group permissions are audited by
    `tracking.signals` like any other.
    """
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    wanted = role_permissions()
    labels = {label for perms in wanted.values() for label in perms}
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.select_related("content_type").filter(
            codename__in={label.split(".", 1)[1] for label in labels}
        )
    }
    groups = {}
    with transaction.atomic():
        for name, perms in wanted.items():
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.set([found[label] for label in perms if label in found])
            groups[name] = group
    return groups
