"""Grants per issuer: existing staff (and users holding read-API tokens) keep every issuer."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def grant_existing_staff_every_issuer(apps, schema_editor):
    # Nobody who worked before grants existed is locked out; users made later start with none.
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Issuer = apps.get_model("tracking", "Issuer")
    IssuerGrant = apps.get_model("tracking", "IssuerGrant")
    ReadApiToken = apps.get_model("tracking", "ReadApiToken")
    holders = set(User.objects.filter(is_staff=True).values_list("pk", flat=True))
    holders |= set(ReadApiToken.objects.values_list("user_id", flat=True))
    issuers = list(Issuer.objects.values_list("pk", flat=True))
    IssuerGrant.objects.bulk_create(
        [IssuerGrant(user_id=user, issuer_id=issuer) for user in holders for issuer in issuers],
        batch_size=1000,
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0014_order_recent_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="readapitoken",
            name="issuers",
            field=models.ManyToManyField(
                blank=True,
                help_text="Only these issuers (within its user's grant); none chosen: all of the user's.",
                related_name="+",
                to="tracking.issuer",
            ),
        ),
        migrations.CreateModel(
            name="IssuerGrant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "granted_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                (
                    "issuer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="grants",
                        to="tracking.issuer",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="issuer_grants",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["issuer__issuer_id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "issuer"), name="grant_unique_per_user_issuer"
                    )
                ],
            },
        ),
        migrations.RunPython(grant_existing_staff_every_issuer, migrations.RunPython.noop),
    ]
