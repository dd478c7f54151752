"""A queue is one entry in `order_queues.QUEUES`: it shows up everywhere staff look for it."""

from __future__ import annotations

import dataclasses

import pytest
from django.db.models import Q
from django.utils.html import escape

from tracking.selectors import order_queues

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/cardorder/"


def test_every_queue_has_its_list_filter_choice_and_dashboard_link(boss, orders):
    dashboard = boss.get("/admin/")
    for queue in order_queues.QUEUES.values():
        page = boss.get(LIST, {"queue": queue.key})
        assert page.status_code == 200, queue.key
        text = page.content.decode()
        assert escape(str(queue.title)) in text, queue.key
        assert escape(str(queue.description)) in text, queue.key
        assert dashboard.context["links"][queue.key].endswith(f"queue={queue.key}")
        if queue.tab:
            assert f"{queue.tab}</a>" in text, queue.key
    choices = boss.get(LIST).content.decode()
    for queue in order_queues.QUEUES.values():
        assert escape(str(queue.label)) in choices, queue.key


def test_the_sidebar_lists_each_queue_of_a_section(boss, orders):
    text = boss.get(LIST).content.decode()
    for queue in order_queues.QUEUES.values():
        if queue.section:
            name = str(queue.nav or queue.title)
            assert f"?queue={queue.key}" in text and name in text, queue.key


def test_a_new_queue_needs_one_entry(boss, orders, monkeypatch):
    extra = order_queues.Queue(
        key="gaps_only",
        title="Orders with a gap",
        label="With a gap",
        description="Orders that skipped a step of the path.",
        condition=lambda now: Q(has_gap=True),
        section=order_queues.WORK,
        tab="Gaps",
        icon="error",
    )
    monkeypatch.setitem(order_queues.QUEUES, extra.key, extra)
    page = boss.get(LIST, {"queue": "gaps_only"}).content.decode()
    assert "Orders with a gap" in page and "Gaps</a>" in page and "With a gap" in page
    assert "?queue=gaps_only" in boss.get("/admin/").content.decode()  # the sidebar
    assert dataclasses.is_dataclass(extra)
