"""The order file upload: Excel's encodings, extra columns, spreadsheet dates, rows refused one by
one at the preview (never a 500 at Confirm), conflicts shown before anything is written, and the
size limit of the documented proxy."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.fixtures.spec_examples import ISSUER_ID
from tracking.models import AuditEntry, CardOrder, RegistrationConflict

pytestmark = pytest.mark.django_db

URL = "/admin/tracking/cardorder/register/"
HEADER = "card_id,issuer_id,operation_id,issuer_request_id,input_file_name,due_date\r\n"


def upload(client, content: bytes, name: str = "orders.csv"):
    return client.post(URL, {"file": SimpleUploadedFile(name, content, "text/csv")})


def confirm(client, preview):
    return client.post(URL, {"confirm": "1", "token": preview.context["token"]}, follow=True)


def test_excel_s_shift_jis_file_with_japanese_text_registers(boss, issuer):
    text = HEADER + f"card-sj-1,{ISSUER_ID},op-sj-1,依頼-0001,注文ファイル_12月.csv,2026/12/12\r\n"

    preview = upload(boss, text.encode("cp932"))

    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Shift_JIS (CP932)" in html
    assert preview.context["parsed"].refused == []
    confirm(boss, preview)
    order = CardOrder.objects.get(card_id="card-sj-1")
    assert order.issuer_request_id == "依頼-0001"
    assert order.input_file_name == "注文ファイル_12月.csv"
    assert order.due_date.isoformat() == "2026-12-12"


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le-bom", "utf-8-sig", "utf-8"], ids=lambda e: e
)
def test_utf16_and_utf8_with_or_without_bom_are_read(boss, issuer, encoding):
    text = HEADER + f"card-u-1,{ISSUER_ID},op-u-1,依頼,ファイル.csv,2026-12-01\r\n"
    if encoding == "utf-16-le-bom":
        content = b"\xff\xfe" + text.encode("utf-16-le")
    else:
        content = text.encode(encoding)

    confirm(boss, upload(boss, content))

    assert CardOrder.objects.get(card_id="card-u-1").input_file_name == "ファイル.csv"


def test_an_extra_column_is_ignored_and_the_preview_says_so(boss, issuer):
    content = f"card_id,issuer_id,colour,due_date\nc-1,{ISSUER_ID},blue,2026/1/5\n".encode()

    preview = upload(boss, content)

    assert "Column(s) ignored: colour." in preview.content.decode()
    confirm(boss, preview)
    assert CardOrder.objects.get(card_id="c-1").due_date.isoformat() == "2026-01-05"


def test_a_nul_row_is_refused_at_the_preview_and_the_others_register(boss, issuer):
    content = (HEADER + f"c-1,{ISSUER_ID},,,,\nc-2,{ISSUER_ID},,re\x00q,,\n").encode()

    preview = upload(boss, content)

    refused = preview.context["parsed"].refused
    assert [(r["line"], r["fields"]) for r in refused] == [(3, ["issuer_request_id"])]
    assert "Holds a NUL character" in preview.content.decode()
    answer = confirm(boss, preview)
    assert answer.status_code == 200
    assert list(CardOrder.objects.values_list("card_id", flat=True)) == ["c-1"]
    audit = AuditEntry.objects.get(action="orders.register")
    assert audit.details["refused_rows"] == [{"line": 3, "fields": ["issuer_request_id"]}]
    assert len(audit.details["file_sha256"]) == 64


def test_bad_due_dates_are_refused_per_row(boss, issuer):
    content = (
        HEADER
        + f"c-1,{ISSUER_ID},,,,9999-12-31\nc-2,{ISSUER_ID},,,,20260305\n"
        + f"c-3,{ISSUER_ID},,,,2026-W10-4\nc-4,{ISSUER_ID},,,,2026/12/12\n"
    ).encode()

    parsed = upload(boss, content).context["parsed"]

    assert [(r["line"], r["fields"]) for r in parsed.refused] == [
        (2, ["due_date"]),
        (3, ["due_date"]),
        (4, ["due_date"]),
    ]
    assert [r["card_id"] for r in parsed.valid] == ["c-4"]


def test_a_field_over_the_csv_limit_is_a_clear_file_error(boss, issuer):
    content = (HEADER + f"c-1,{ISSUER_ID},,{'x' * 131_073},,\n").encode()

    answer = upload(boss, content)

    assert answer.status_code == 200
    assert "Line 2 cannot be read" in answer.content.decode()
    assert not CardOrder.objects.exists()


def test_a_long_field_under_the_csv_limit_is_refused_on_its_row(boss, issuer):
    content = (HEADER + f"c-1,{ISSUER_ID},,{'x' * 100_000},,\nc-2,{ISSUER_ID},,,,\n").encode()

    parsed = upload(boss, content).context["parsed"]

    assert [(r["line"], r["fields"]) for r in parsed.refused] == [(2, ["issuer_request_id"])]


def test_a_bare_cr_in_an_unquoted_field_is_a_clear_file_error(boss, issuer):
    content = (HEADER + f"c-1,{ISSUER_ID},,re\rq,,\n").encode()

    answer = upload(boss, content)

    assert answer.status_code == 200
    assert "cannot be read" in answer.content.decode()
    assert not CardOrder.objects.exists()


def test_conflicts_show_in_the_preview_and_are_kept_at_confirm(boss, issuer):
    CardOrder.objects.create(
        issuer=issuer, card_id="c-1", operation_id="op-1", issuer_request_id="req-stored"
    )
    content = (HEADER + f"c-1,{ISSUER_ID},op-1,req-file,,\nc-2,{ISSUER_ID},op-2,,,\n").encode()

    preview = upload(boss, content)

    html = preview.content.decode()
    assert 'id="conflict-rows"' in html and "req-stored" in html and "req-file" in html
    answer = confirm(boss, preview)
    assert "1 rows disagreed with stored orders" in answer.content.decode()
    assert CardOrder.objects.get(card_id="c-1").issuer_request_id == "req-stored"
    kept = RegistrationConflict.objects.get()
    assert (kept.registered_value, kept.source) == ("req-file", "upload orders.csv")


def test_the_size_limit_is_the_proxy_s_2_mb_by_default(boss, issuer, settings):
    assert settings.REGISTRATION_UPLOAD_MAX_BYTES == 2 * 1024 * 1024
    settings.REGISTRATION_UPLOAD_MAX_BYTES = 1024

    answer = upload(boss, (HEADER + f"c-1,{ISSUER_ID},,,,\n" * 100).encode())

    assert "The file is larger than" in answer.content.decode()
    assert not CardOrder.objects.exists()
