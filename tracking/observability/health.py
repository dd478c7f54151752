"""Liveness and readiness probes for load balancers, built on django-health-check.

`/healthz` answers as long as the process does (no dependency is touched), so a supervisor only
restarts a process that is really stuck. `/readyz` says whether this instance can do its work:
the database answers, every migration is applied, the broker answers, and no stored item has
waited too long to be applied. Both are open without login and tell nothing sensitive: the names
of the checks and "ok" or "fail", never an error text, host name or version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

# Migrations never un-apply themselves, so once this process has seen them all applied it stops
# loading the migration graph on every probe.
_migrations_seen_applied = False


@login_not_required
@require_GET
def liveness(request: HttpRequest) -> HttpResponse:
    """GET /healthz: the process answers. No database, broker or cache is touched."""
    response = HttpResponse("ok\n", content_type="text/plain; charset=utf-8")
    add_never_cache_headers(response)
    return response


@dataclasses.dataclass
class MigrationsApplied(HealthCheck):
    """Every migration on disk is applied to the database (a deploy did not skip `migrate`)."""

    alias: str = "default"

    def run(self) -> None:
        global _migrations_seen_applied
        if _migrations_seen_applied:
            return
        connection = connections[self.alias]
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            raise ServiceUnavailable("database unreachable") from exc
        finally:
            connection.close()
        if plan:
            raise ServiceUnavailable("migrations pending")
        _migrations_seen_applied = True


@dataclasses.dataclass
class BrokerReachable(HealthCheck):
    """The Celery broker accepts a connection (Redis, RabbitMQ or the filesystem folder)."""

    timeout: datetime.timedelta = dataclasses.field(
        default=datetime.timedelta(seconds=3), repr=False
    )

    def run(self) -> None:
        # The project's Celery app (config.celery_app made it the current one at start-up):
        # taken from Celery, not imported from the configuration above this package.
        from celery import current_app as app

        seconds = self.timeout.total_seconds()
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=0, timeout=seconds)
                # A virtual transport (Redis) connects lazily; opening a channel talks to it.
                connection.default_channel  # noqa: B018
        except Exception as exc:  # kombu raises transport-specific errors
            raise ServiceUnavailable("broker unreachable") from exc


@dataclasses.dataclass
class UnappliedEventsFresh(HealthCheck):
    """No stored-but-unapplied item is older than READINESS_MAX_UNAPPLIED_AGE seconds.

    An item stays unapplied only between its insert and the re-derivation in the same
    transaction, or after a crash until the safety-net sweep applies it; an old one means the
    instance (or the sweep) is not keeping up.
    """

    alias: str = "default"

    def run(self) -> None:
        from tracking.models import OperationEvent

        try:
            oldest = (
                OperationEvent.objects.using(self.alias)
                .filter(applied_at__isnull=True)
                .order_by("first_received_at")
                .values_list("first_received_at", flat=True)
                .first()
            )
        except DatabaseError as exc:
            raise ServiceUnavailable("database unreachable") from exc
        finally:
            connections[self.alias].close()
        if oldest is None:
            return
        age = (timezone.now() - oldest).total_seconds()
        if age > settings.READINESS_MAX_UNAPPLIED_AGE:
            raise ServiceUnavailable("unapplied items too old")


READINESS_CHECKS = {
    "database": Database,
    "migrations": MigrationsApplied,
    "broker": BrokerReachable,
    "unapplied_items": UnappliedEventsFresh,
}


class ReadinessView(HealthCheckView):
    """GET /readyz: 200 when every readiness check passes, 503 otherwise.

    Answers plain text by default and minimal JSON when asked (`Accept: application/json`):
    each check's name and "ok" or "fail", nothing else.
    """

    http_method_names = ["get", "head"]

    def get_checks(self):
        names = [n for n in READINESS_CHECKS if n != "broker" or settings.READINESS_CHECK_BROKER]
        self.check_names = names
        return (READINESS_CHECKS[name]() for name in names)

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            self.results = await asyncio.gather(
                *(check.get_result(executor) for check in self.get_checks())
            )
        statuses = {
            name: "fail" if result.error else "ok"
            for name, result in zip(self.check_names, self.results, strict=True)
        }
        ready = all(value == "ok" for value in statuses.values())
        status = 200 if ready else 503
        if "application/json" in request.headers.get("accept", ""):
            body = {"status": "ok" if ready else "fail", "checks": statuses}
            return JsonResponse(body, status=status)
        lines = ["ok" if ready else "fail", *(f"{n}: {v}" for n, v in statuses.items())]
        return HttpResponse(
            "\n".join(lines) + "\n", content_type="text/plain; charset=utf-8", status=status
        )


# Open to the load balancer even where LoginRequiredMiddleware guards every other page.
readiness = login_not_required(ReadinessView.as_view())
