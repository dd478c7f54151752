"""The outbox of card-order events, event endpoints, deliveries and their attempts."""

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def _txid_default(apps, schema_editor):
    """On PostgreSQL each outbox row records its writing transaction's id: the feed's position."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE tracking_outboundevent ALTER COLUMN txid "
        "SET DEFAULT (pg_current_xact_id()::text::bigint)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0016_merge_issuer_side_real_rules"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting to be sent"),
                            ("delivered", "Delivered"),
                            ("gave_up", "Given up"),
                        ],
                        default="pending",
                        max_length=16,
                        verbose_name="status",
                    ),
                ),
                ("is_replay", models.BooleanField(default=False, verbose_name="replay")),
                ("attempts", models.PositiveIntegerField(default=0, verbose_name="attempts")),
                (
                    "next_attempt_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="next attempt"),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, verbose_name="created"),
                ),
                (
                    "last_attempt_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="last attempt"),
                ),
                (
                    "delivered_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="delivered"),
                ),
                (
                    "last_status_code",
                    models.PositiveSmallIntegerField(null=True, verbose_name="last answer (HTTP)"),
                ),
                (
                    "last_error",
                    models.CharField(blank=True, max_length=255, verbose_name="last error"),
                ),
            ],
            options={
                "verbose_name": "event delivery",
                "verbose_name_plural": "event deliveries",
                "ordering": ["-id"],
            },
        ),
        migrations.CreateModel(
            name="DeliveryAttempt",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.PositiveIntegerField(verbose_name="attempt")),
                (
                    "started_at",
                    models.DateTimeField(default=django.utils.timezone.now, verbose_name="sent at"),
                ),
                (
                    "status_code",
                    models.PositiveSmallIntegerField(
                        blank=True, null=True, verbose_name="answer (HTTP)"
                    ),
                ),
                (
                    "latency_ms",
                    models.PositiveIntegerField(
                        blank=True, null=True, verbose_name="time to answer (ms)"
                    ),
                ),
                (
                    "response_start",
                    models.TextField(blank=True, verbose_name="answer's first bytes"),
                ),
                ("error", models.CharField(blank=True, max_length=255, verbose_name="error")),
                (
                    "delivery",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tries",
                        to="tracking.eventdelivery",
                    ),
                ),
            ],
            options={
                "verbose_name": "delivery attempt",
                "verbose_name_plural": "delivery attempts",
                "ordering": ["-id"],
            },
        ),
        migrations.CreateModel(
            name="EventEndpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("url", models.URLField(max_length=2048, verbose_name="address")),
                (
                    "event_types",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="The event types sent to this address; none chosen means every type.",
                        verbose_name="event types",
                    ),
                ),
                ("enabled", models.BooleanField(default=True, verbose_name="enabled")),
                (
                    "description",
                    models.CharField(blank=True, max_length=200, verbose_name="description"),
                ),
                ("secret_encrypted", models.TextField(editable=False)),
                ("previous_secret_encrypted", models.TextField(blank=True, editable=False)),
                (
                    "previous_secret_expires_at",
                    models.DateTimeField(
                        blank=True,
                        editable=False,
                        null=True,
                        verbose_name="previous secret valid until",
                    ),
                ),
                (
                    "failing_since",
                    models.DateTimeField(
                        blank=True, editable=False, null=True, verbose_name="failing since"
                    ),
                ),
                (
                    "disabled_at",
                    models.DateTimeField(
                        blank=True, editable=False, null=True, verbose_name="disabled at"
                    ),
                ),
                (
                    "disabled_reason",
                    models.CharField(
                        blank=True, editable=False, max_length=255, verbose_name="why disabled"
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, editable=False, verbose_name="created"
                    ),
                ),
                (
                    "issuer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="event_endpoints",
                        to="tracking.issuer",
                    ),
                ),
            ],
            options={
                "verbose_name": "event endpoint",
                "verbose_name_plural": "event endpoints",
                "ordering": ["issuer__issuer_id", "id"],
                "permissions": [
                    ("replay_eventendpoint", "Can replay events to an endpoint"),
                    ("rotate_eventendpoint", "Can rotate an endpoint's signing secret"),
                ],
            },
        ),
        migrations.AddField(
            model_name="eventdelivery",
            name="endpoint",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="tracking.eventendpoint",
            ),
        ),
        migrations.CreateModel(
            name="OutboundEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("event_id", models.CharField(max_length=40, unique=True, verbose_name="event id")),
                ("type", models.CharField(max_length=40, verbose_name="type")),
                ("sequence", models.PositiveIntegerField(verbose_name="sequence")),
                (
                    "payload",
                    models.JSONField(
                        encoder=django.core.serializers.json.DjangoJSONEncoder, verbose_name="data"
                    ),
                ),
                (
                    "rederive",
                    models.BooleanField(default=False, verbose_name="made by a re-derivation"),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, verbose_name="created"),
                ),
                ("txid", models.BigIntegerField(db_default=0, editable=False)),
                (
                    "issuer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tracking.issuer",
                    ),
                ),
                (
                    "order",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outbound_events",
                        to="tracking.cardorder",
                    ),
                ),
            ],
            options={
                "verbose_name": "outbound event",
                "verbose_name_plural": "outbound events",
                "ordering": ["-id"],
            },
        ),
        migrations.AddField(
            model_name="eventdelivery",
            name="event",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="tracking.outboundevent",
            ),
        ),
        migrations.AddIndex(
            model_name="outboundevent",
            index=models.Index(fields=["txid", "id"], name="outbound_feed_position"),
        ),
        migrations.AddIndex(
            model_name="outboundevent",
            index=models.Index(fields=["issuer", "txid", "id"], name="outbound_issuer_feed"),
        ),
        migrations.AddIndex(
            model_name="outboundevent",
            index=models.Index(fields=["order", "type"], name="outbound_order_type"),
        ),
        migrations.AddConstraint(
            model_name="outboundevent",
            constraint=models.UniqueConstraint(
                fields=("order", "sequence"), name="outbound_order_sequence"
            ),
        ),
        migrations.AddIndex(
            model_name="eventdelivery",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["next_attempt_at"],
                name="event_delivery_due",
            ),
        ),
        migrations.AddIndex(
            model_name="eventdelivery",
            index=models.Index(fields=["endpoint", "-id"], name="event_delivery_endpoint"),
        ),
        migrations.RunPython(_txid_default, migrations.RunPython.noop),
    ]
