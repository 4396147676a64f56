"""Admin for workflows and their versions (STYLE.md: admin).

Workflows and versions are created by ``runflow`` from scripts; a workflow's name,
description and default budget of new runs are edited here. A version is the exact
source runs execute (CONTRACTS.md §4), so it is read-only here; one that no run uses may
be deleted.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from apps.workflows.models import Workflow, WorkflowVersion


def runs_link(version: WorkflowVersion, count: int) -> str:
    url = reverse("admin:runs_run_changelist")
    query = urlencode({"version__id__exact": version.pk})
    return format_html('<a href="{}?{}">{}</a>', url, query, count)


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    show_change_link = True  # the version's page shows its source
    fields = ["sha256", "entry", "origin_path", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "default_budget_usd", "default_budget_tokens", "created_at",
                    "version_count"]
    search_fields = ["slug", "name"]
    readonly_fields = ["slug", "created_at"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "created_at"]}),
        ("Default budget of new runs", {
            "fields": ["default_budget_usd", "default_budget_tokens"],
            "description": "Applies to runs created from now on, per limit, when the run is "
                           "given none (--budget-usd / --budget-tokens / UsageLimits). "
                           "Existing runs keep their limits; raise those with "
                           "<code>resume RUN_ID --budget-usd X</code>.",
        }),
    ]
    inlines = [WorkflowVersionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return super().get_queryset(request).annotate(version_count=Count("versions"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a workflow comes into being with its first version, from a script

    @admin.display(description="versions", ordering="version_count")
    def version_count(self, workflow: Workflow) -> int:
        return workflow.version_count


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workflow", "entry", "origin_path", "created_at", "runs"]
    list_filter = ["workflow"]
    search_fields = ["sha256", "workflow__slug", "origin_path"]
    list_select_related = ["workflow"]
    fieldsets = [
        (None, {"fields": ["workflow", "sha256", "entry", "origin_path", "created_at", "runs"]}),
        ("Source", {"fields": ["source_code"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowVersion]:
        return super().get_queryset(request).annotate(run_count=Count("runs"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest,
                              obj: WorkflowVersion | None = None) -> bool:
        # Without an object (the bulk action) Django itself refuses versions that runs
        # protect (Run.version is PROTECT), listing them on the confirmation page.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or not obj.runs.exists())

    @admin.display(description="runs", ordering="run_count")
    def runs(self, version: WorkflowVersion) -> str:
        return runs_link(version, version.run_count)

    @admin.display(description="source")
    def source_code(self, version: WorkflowVersion) -> str:
        return format_html("<pre>{}</pre>", version.source)
