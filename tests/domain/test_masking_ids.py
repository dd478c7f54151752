"""Card-number masking leaves D1's identifiers alone and still catches card numbers."""

from __future__ import annotations

import pytest

from tracking.domain.masking import pan_mask_text

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "text",
    [
        "op-s11-r1-000022-9215148ab1",
        "01c5a05e-e197-11ec-8fea-0242ac120002",
        "row-0001-2026-03-05-0042",
    ],
)
def test_identifiers_with_digit_groups_are_not_card_numbers(text):
    assert pan_mask_text(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("4111111111111111", "************1111"),
        ("pan-4111111111111111", "pan-************1111"),
        ("4111-1111-1111-1111", "************1111"),
        ("3782 822463 10005", "***********0005"),
    ],
)
def test_card_numbers_are_masked_however_they_are_written(text, masked):
    assert pan_mask_text(text) == masked


def test_operation_id_is_never_scanned(issuer, post_notification):
    from tests.fixtures import spec_examples as spec
    from tracking.models import CardOrder

    item = {**spec.E1["operations"][0], "operationId": "op-4111111111111111"}
    assert post_notification({"operations": [item]}).status_code == 204
    assert CardOrder.objects.get().operation_id == "op-4111111111111111"
