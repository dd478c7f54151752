"""URLs of the read API (under /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from tracking.api.events import EventFeedView
from tracking.api.views import CardOrderViewSet

router = SimpleRouter()
router.register("orders", CardOrderViewSet, basename="order")

urlpatterns = [
    *router.urls,
    path("events/", EventFeedView.as_view(), name="event-feed"),
]
