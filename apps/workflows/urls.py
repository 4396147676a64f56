"""``/api/workflows/``: exact paths, no trailing slash after a slug (README "REST API")."""

from django.urls import path

from apps.workflows import apis

urlpatterns = [
    path("", apis.WorkflowListApi.as_view(), name="api-workflows"),
    path("<str:slug>", apis.WorkflowDetailApi.as_view(), name="api-workflow"),
    path("<str:slug>/runs", apis.WorkflowRunsApi.as_view(), name="api-workflow-runs"),
]
