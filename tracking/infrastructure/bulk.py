"""Set-based UPDATE of many rows with different values, in one statement on any backend.

Django's `bulk_update` builds one CASE expression per field and row, which costs far more Python
time than the database work for the wide rows of a card order. This writes
`WITH v(...) AS (VALUES ...) UPDATE t SET ... FROM v WHERE t.id = v.id` instead (PostgreSQL, and
SQLite 3.33+), with values prepared by each field exactly as `save()` would.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection, models
from django.db.models.expressions import Col


def rows_update(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write `fields` of every object in `objs` (all of one model) in one UPDATE statement."""
    if not objs:
        return
    model = type(objs[0])
    pk, concrete, first_row, row, head, tail = _update_parts(
        model, tuple(fields), connection.vendor
    )
    params: list = []
    for obj in objs:
        params.append(pk.get_db_prep_save(obj.pk, connection))
        for field in concrete:
            params.append(field.get_db_prep_save(getattr(obj, field.attname), connection))
    sql = f"{head}{', '.join([first_row] + [row] * (len(objs) - 1))}{tail}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.cache
def _update_parts(model: type[models.Model], fields: tuple[str, ...], vendor: str) -> tuple:
    """The fixed parts of `rows_update`'s statement for one model and field list (built once:
    the column types and quoting cost more Python time than the rest of the call)."""
    meta = model._meta
    pk = meta.pk
    concrete = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    columns = [pk.column, *(f.column for f in concrete)]

    def placeholder(field) -> str:
        return f"CAST(%s AS {field.db_type(connection)})" if vendor == "postgresql" else "%s"

    # PostgreSQL types a VALUES column from its typed rows, so casting the first row is enough.
    first_row = "(" + ", ".join(placeholder(f) for f in [pk, *concrete]) + ")"
    row = "(" + ", ".join(["%s"] * (len(concrete) + 1)) + ")"
    alias = "v"
    assignments = ", ".join(f"{quote(c)} = {alias}.{quote(c)}" for c in columns[1:])
    # Only quoted identifiers from the model's metadata are interpolated; values are parameters.
    head = f"WITH {alias} ({', '.join(quote(c) for c in columns)}) AS (VALUES "
    tail = (
        f") UPDATE {quote(meta.db_table)} SET {assignments} FROM {alias} "  # noqa: S608
        f"WHERE {quote(meta.db_table)}.{quote(pk.column)} = {alias}.{quote(pk.column)}"
    )
    return pk, concrete, first_row, row, head, tail


def rows_insert_new(
    objs: Sequence[models.Model],
    *,
    conflict_fields: Sequence[str],
    returning: Sequence[str],
    insert_fields: Sequence[str] = (),
) -> list[tuple]:
    """INSERT `objs`, skipping rows that clash on `conflict_fields`; return `returning` of new rows.

    One statement, `INSERT ... ON CONFLICT (...) DO NOTHING RETURNING ...`: a row that another
    transaction has just inserted is waited for and then skipped, so "new" is exact under
    concurrency. Only `insert_fields` are written when given (the others take their
    `db_default`); else every column.
    """
    if not objs:
        return []
    meta = type(objs[0])._meta
    quote = connection.ops.quote_name
    fields = (
        [meta.get_field(name) for name in insert_fields]
        if insert_fields
        else [f for f in meta.concrete_fields if not f.primary_key]
    )
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params: list = []
    for obj in objs:
        params.extend(f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in conflict_fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(objs))} "
        f"ON CONFLICT ({conflict}) DO NOTHING "
        f"RETURNING {', '.join(quote(meta.get_field(name).column) for name in returning)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(r) for r in cursor.fetchall()]


def rows_upsert(
    objs: Sequence[models.Model],
    *,
    insert_fields: Sequence[str],
    conflict_fields: Sequence[str],
    update_fields: Sequence[str],
    returning: Sequence[str],
) -> list[dict]:
    """INSERT or UPDATE `objs` on `conflict_fields`; return `returning` of every row as stored.

    Only `insert_fields` are written for new rows; the other columns take their `db_default`.
    `ON CONFLICT DO UPDATE` locks each existing row until the transaction ends, which serialises
    concurrent writers of the same rows; callers sort `objs` so that two batches lock in the same
    order and cannot deadlock.
    """
    if not objs:
        return []
    meta = type(objs[0])._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in insert_fields]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params: list = []
    for obj in objs:
        params.extend(f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in conflict_fields)
    updates = ", ".join(
        f"{quote(meta.get_field(n).column)} = EXCLUDED.{quote(meta.get_field(n).column)}"
        for n in update_fields
    )
    returned = [meta.get_field(name) for name in returning]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(objs))} "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates} "
        f"RETURNING {', '.join(quote(f.column) for f in returned)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # The same conversions a queryset applies (JSON decoding, SQLite booleans, ...).
    converters = []
    for field in returned:
        column = Col(meta.db_table, field)
        converters.append(
            (column, connection.ops.get_db_converters(column) + field.get_db_converters(connection))
        )
    result = []
    for values in rows:
        record = {}
        for (column, column_converters), value in zip(converters, values, strict=True):
            for converter in column_converters:
                value = converter(value, column, connection)
            record[column.target.attname] = value
        result.append(record)
    return result


def row_insert(obj: models.Model) -> None:
    """INSERT `obj` (a new row with an automatic id) as `save()` would, and set its id.

    Without signals and without the SQL compiler, whose cost is most of a `save()` of a wide
    row on a hot path; values are prepared by each field exactly as `save()` prepares them.
    """
    sql, values = row_insert_statement(obj)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row_inserted(obj, cursor.fetchone()[0])


def row_inserted(obj: models.Model, pk) -> None:
    """Mark `obj` as the row its INSERT (of `row_insert_statement`) wrote with id `pk`."""
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = connection.alias


def row_insert_statement(obj: models.Model) -> tuple[str, list]:
    """The INSERT of `row_insert` (RETURNING the id) and its values, to run inside another."""
    fields, sql = _insert_parts(type(obj), connection.vendor)
    return sql, [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]


@functools.cache
def _insert_parts(model: type[models.Model], vendor: str) -> tuple[list, str]:
    quote = connection.ops.quote_name
    fields = [f for f in model._meta.local_concrete_fields if not f.primary_key]
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    return fields, f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING {pk}"  # noqa: S608
