"""URLs of the read API (under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from tracking.api.views import CardOrderViewSet

router = SimpleRouter()
router.register("orders", CardOrderViewSet, basename="order")

urlpatterns = router.urls
