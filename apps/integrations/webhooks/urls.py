from django.urls import path

from apps.integrations.webhooks.views import WebhookView

urlpatterns = [path("<slug:slug>/", WebhookView.as_view(), name="webhook")]
