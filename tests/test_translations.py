"""The Japanese catalogue is complete and its compiled form is the one that ships.

(a) Gathering the marked strings anew (makemessages, into a copy) finds none without Japanese
and none marked fuzzy; (b) the committed django.mo holds exactly the translations of django.po.
"""

from __future__ import annotations

import gettext
import shutil
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.test import override_settings
from django.utils import translation

from tracking.management.commands.translations import catalogue_gather, catalogue_path

BASE_DIR = Path(settings.BASE_DIR)
PO = catalogue_path("ja", BASE_DIR / "locale")
MO = PO.with_suffix(".mo")
SOURCES = ["tracking", "templates", "config"]


def untranslated(po_path: Path) -> list[str]:
    with po_path.open("rb") as source:
        catalogue = read_po(source)
    missing = []
    for message in catalogue:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            msgid = message.id[0] if isinstance(message.id, tuple) else message.id
            missing.append(f"{'fuzzy: ' if message.fuzzy else ''}{msgid}")
    return missing


@pytest.mark.skipif(
    shutil.which("xgettext") is None,
    reason="needs gettext's xgettext to gather strings (CI installs it: .ci/run)",
)
def test_every_marked_string_has_its_japanese(tmp_path, monkeypatch):
    for name in SOURCES:
        (tmp_path / name).symlink_to(BASE_DIR / name)
    shutil.copytree(BASE_DIR / "locale", tmp_path / "locale")
    monkeypatch.chdir(tmp_path)
    with override_settings(LOCALE_PATHS=[tmp_path / "locale"]):
        catalogue_gather(language="ja")
    missing = untranslated(catalogue_path("ja", tmp_path / "locale"))
    assert not missing, (
        f"{len(missing)} strings without Japanese (run `manage.py translations`, translate "
        f"the empty msgstr in {PO.relative_to(BASE_DIR)}, run it again): {missing[:30]}"
    )


def test_the_committed_catalogue_has_every_translation():
    assert not untranslated(PO)


def test_the_compiled_catalogue_is_the_one_of_the_source():
    with PO.open("rb") as source:
        catalogue = read_po(source)
    expected = {}
    for message in catalogue:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            for n, text in enumerate(message.string):
                expected[(message.id[0], n)] = text
        else:
            expected[message.id] = message.string
    with MO.open("rb") as compiled:
        shipped = gettext.GNUTranslations(compiled)._catalog
    shipped = {key: value for key, value in shipped.items() if key != ""}
    stale = {k for k in expected.keys() | shipped.keys() if expected.get(k) != shipped.get(k)}
    assert not stale, (
        f"django.mo differs from django.po on {len(stale)} entries (run "
        f"`manage.py translations --compile-only`): {sorted(map(str, stale))[:20]}"
    )


def test_the_shipped_catalogue_speaks_a_japanese_back_offices_words():
    with translation.override("ja"):
        assert translation.gettext("Shipped") == "発送済み"
        assert translation.gettext("Delivered") == "配達完了"
        assert translation.gettext("On hold") == "保留中"
        assert translation.gettext("Exceptions") == "例外"
