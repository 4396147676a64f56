"""``/api/runs/``: exact paths, no trailing slash after a run id (README "REST API")."""

from django.urls import path

from apps.runs import apis

urlpatterns = [
    path("", apis.RunListApi.as_view(), name="api-runs"),
    path("<str:run_id>", apis.RunDetailApi.as_view(), name="api-run"),
    path("<str:run_id>/resume", apis.RunResumeApi.as_view(), name="api-run-resume"),
    path("<str:run_id>/cancel", apis.RunCancelApi.as_view(), name="api-run-cancel"),
    path("<str:run_id>/approve", apis.RunApproveApi.as_view(), name="api-run-approve"),
    path("<str:run_id>/reject", apis.RunRejectApi.as_view(), name="api-run-reject"),
]
