"""`manage.py translations`: gather the back office's words into the Japanese catalogue, compile it.

`locale/ja/LC_MESSAGES/django.po` is the source staff's Japanese is written in; `django.mo` is
its compiled form, kept in the repository so that a machine without gettext shows Japanese too.
Gathering needs gettext's xgettext (Debian: `apt-get install gettext`); compiling uses Babel
(`pip install babel`, in the test extras), so `--compile-only` works without gettext.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

LANGUAGES = ["ja"]
# What is not the portal's back office: tests, benchmarks, the D1 sandbox (it never shows a page
# to staff), deployment files and collected static files.
NOT_THE_BACK_OFFICE = ["tests/*", "bench/*", "d1sandbox/*", "deploy/*", "docs/*", "staticfiles/*"]


def catalogue_path(language: str, base: Path | None = None) -> Path:
    return (base or Path(settings.LOCALE_PATHS[0])) / language / "LC_MESSAGES" / "django.po"


def catalogue_gather(*, language: str) -> None:
    """makemessages for `language` with the project's ignores (obsolete entries dropped)."""
    call_command(
        "makemessages",
        locale=[language],
        ignore_patterns=NOT_THE_BACK_OFFICE,
        no_obsolete=True,
        symlinks=True,
        verbosity=0,
    )


def catalogue_compile(po_path: Path) -> Path:
    """Write the .mo beside `po_path` (fuzzy entries left out, as gettext's msgfmt does)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path.open("rb") as source:
        catalogue = read_po(source)
    mo_path = po_path.with_suffix(".mo")
    with mo_path.open("wb") as target:
        write_mo(target, catalogue, use_fuzzy=False)
    return mo_path


class Command(BaseCommand):
    help = (
        "Gather every marked string into locale/<lang>/LC_MESSAGES/django.po (needs gettext), "
        "then compile django.mo (Babel). Translate the new empty msgstr entries, then run again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--compile-only", action="store_true", help="only compile the .po files (no gettext)"
        )

    def handle(self, *args, compile_only: bool = False, **options) -> None:
        for language in LANGUAGES:
            if not compile_only:
                catalogue_gather(language=language)
            mo_path = catalogue_compile(catalogue_path(language))
            self.stdout.write(f"{language}: {mo_path.relative_to(settings.BASE_DIR)}")
