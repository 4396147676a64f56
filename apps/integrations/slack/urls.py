"""slack endpoints (under construction)."""

urlpatterns: list = []
