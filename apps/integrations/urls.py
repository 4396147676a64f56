"""Inbound hooks under ``/hooks/``: each integration's endpoints in its own package."""

from django.urls import include, path

urlpatterns = [
    path("slack/", include("apps.integrations.slack.urls")),
    path("webhooks/", include("apps.integrations.webhooks.urls")),
]
