"""Refusal tallies: calls refused before the view (credentials, method, too many), counted only."""

from __future__ import annotations

import ipaddress
import logging

from django.db import DatabaseError, connection
from django.utils import timezone

from tracking.domain.masking import pan_mask_text
from tracking.infrastructure.after_response import after_response
from tracking.infrastructure.signals import delivery_answered
from tracking.intake.contract import Answer, Envelope, text_clean
from tracking.models import RefusalTally

logger = logging.getLogger(__name__)


def refusal_tally(*, envelope: Envelope, status: int, error_code: str, error: str) -> Answer:
    """Count a refused call that keeps nothing it sent, and return the refusal to send.

    Adds one to the `RefusalTally` row of the caller's source, this minute and this reason (one
    INSERT ... ON CONFLICT DO UPDATE, so concurrent refusals never lose a count), once the
    answer is sent. Best effort
    like `delivery_refuse`: the refusal is answered and logged even when it cannot be counted.
    """
    now = timezone.now()
    values = {
        "minute": now.replace(second=0, microsecond=0),
        "source": refusal_source(envelope.remote_addr),
        "status_code": status,
        "error_code": error_code[:64],
        "count": 1,
        "first_at": now,
        "last_at": now,
        "issuer_id_in_path": text_clean(envelope.issuer_id_in_path, 64),
        "client_identity": text_clean(envelope.client_identity, 255),
        "correlation_id": envelope.correlation_id,
        "error": text_clean(pan_mask_text(error), 255),
    }
    latest = ["last_at", "issuer_id_in_path", "client_identity", "correlation_id", "error"]

    def count() -> None:
        try:
            _tally_upsert(values, latest=latest)
        except DatabaseError:
            logger.exception(
                "could not count refused call source=%s status=%s code=%s",
                values["source"],
                status,
                error_code,
            )

    after_response(count)  # the count decides nothing about the answer
    logger.info(
        "call refused issuer=%s status=%s code=%s source=%s correlation_id=%s",
        envelope.issuer_id_in_path,
        status,
        error_code,
        values["source"],
        envelope.correlation_id,
    )
    delivery_answered.send(
        sender=RefusalTally,
        issuer_id=envelope.issuer_id_in_path,
        status=status,
        error_code=error_code,
    )
    return Answer(status, error_code, error)


def refusal_source(address: str) -> str:
    """Where refused calls are counted: the address, or its /64 for IPv6 (one site's block)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return text_clean(address, 64)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _tally_upsert(values: dict, *, latest: list[str]) -> None:
    # PostgreSQL and SQLite (3.24+) share this syntax; values are prepared as save() would.
    meta = RefusalTally._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in values]
    table = quote(meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    conflict = ", ".join(quote(meta.get_field(n).column) for n in meta.constraints[0].fields)
    count = quote(meta.get_field("count").column)
    updates = ", ".join(
        [f"{count} = {table}.{count} + 1"]
        + [
            f"{quote(meta.get_field(n).column)} = excluded.{quote(meta.get_field(n).column)}"
            for n in latest
        ]
    )
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    # Only quoted identifiers from the model's metadata are interpolated; values are parameters.
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) "  # noqa: S608
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
