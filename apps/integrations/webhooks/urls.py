"""webhooks endpoints (under construction)."""

urlpatterns: list = []
