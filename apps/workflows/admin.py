"""Admin for workflows, their versions, triggers and the events that start runs
(STYLE.md: admin).

A workflow comes into being with its first version, registered from a script (the
``register_workflow`` command, discovery, the API, or this admin's "Register a workflow"
page for staff: uploading is deploying code, CONTRACTS.md §4). Its name, description,
default budget of new runs and settings (``context.config``) are edited here, through
``workflow_update``. A version is the exact source runs execute, so it is read-only here;
one that no run uses may be deleted. Triggers and events are written by registration and
by the endpoints only, so they are read-only too.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from apps.core.exceptions import ApplicationError
from apps.integrations.webhooks.services import webhook_rotate
from apps.runs.admin import ReadOnlyAdminMixin, admin_link, changelist_link, pretty_json
from apps.runs.models import Run
from apps.workflows.forms import WorkflowForm, WorkflowRegisterForm
from apps.workflows.models import Event, Trigger, Workflow, WorkflowVersion
from apps.workflows.services.edits import EDITABLE, workflow_update
from apps.workflows.services.uploads import workflow_upload
from flowops.exceptions import ScriptError


def runs_link(version: WorkflowVersion, count: int) -> str:
    url = reverse("admin:runs_run_changelist")
    query = urlencode({"version__id__exact": version.pk})
    return format_html('<a href="{}?{}">{}</a>', url, query, count)


def script_error_text(exc: ScriptError, file_name: str | None) -> str:
    """``file:line: reason``, naming the file as the person knows it (not the upload's
    internal origin) and the location once."""
    reason = str(exc)
    where = f"{exc.path or ''}:{exc.line}" if exc.line is not None else exc.path or ""
    if where and reason.startswith(f"{where}: "):
        reason = reason[len(where) + 2:]
    shown = file_name or "source"
    return f"{shown}:{exc.line}: {reason}" if exc.line is not None else f"{shown}: {reason}"


# -- inlines of a workflow ---------------------------------------------------------------
class TriggerInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The ``@trigger`` declarations of each registered version; only the active
    version's are active (registration switches them)."""

    model = Trigger
    fk_name = "workflow"
    extra = 0
    can_delete = False
    ordering = ["-active", "-id"]
    fields = ["integration", "event", "options_pretty", "version_link", "line", "active",
              "last_scheduled_for"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Trigger]:
        return super().get_queryset(request).select_related("version__workflow")

    @admin.display(description="options")
    def options_pretty(self, trigger: Trigger) -> str:
        return pretty_json(trigger.options) if trigger.options else "-"

    @admin.display(description="version")
    def version_link(self, trigger: Trigger) -> str:
        return admin_link(trigger.version)


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    show_change_link = True  # the version's page shows its source
    fields = ["sha256", "entry", "origin_path", "created_at", "is_active", "runs"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowVersion]:
        return super().get_queryset(request).select_related("workflow").annotate(
            run_count=Count("runs"))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="active", boolean=True)
    def is_active(self, version: WorkflowVersion) -> bool:
        return version.workflow.active_version_id == version.pk

    @admin.display(description="runs")
    def runs(self, version: WorkflowVersion) -> str:
        return runs_link(version, version.run_count)


# -- workflows ---------------------------------------------------------------------------
@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    list_display = ["slug", "name", "active_version", "default_budget_usd",
                    "default_budget_tokens", "created_at", "version_count"]
    list_select_related = ["active_version__workflow"]
    search_fields = ["slug", "name"]
    readonly_fields = ["slug", "created_at", "active_version_link", "activity"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "created_at", "active_version_link",
                           "activity"]}),
        ("Default budget of new runs", {
            "fields": ["default_budget_usd", "default_budget_tokens"],
            "description": "Applies to runs created from now on, per limit, when the run is "
                           "given none (--budget-usd / --budget-tokens / UsageLimits). "
                           "Existing runs keep their limits; raise those with "
                           "<code>resume RUN_ID --budget-usd X</code>.",
        }),
        ("Settings (context.config)", {
            "fields": ["config"],
            "description": 'A JSON object the script reads as <code>context.config</code>. '
                           'Write a secret as <code>{"$env": "NAME"}</code>: the worker reads '
                           "the environment variable NAME when the script runs, and the "
                           "secret itself is never stored. Plain-text secrets are refused.",
        }),
    ]
    inlines = [TriggerInline, WorkflowVersionInline]
    actions = ["rotate_webhook_secret"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return super().get_queryset(request).annotate(version_count=Count("versions"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a workflow comes into being with its first version: "Register"

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        # The form has checked the same rules; the service is the one place that writes.
        changed = {f: form.cleaned_data[f] for f in form.changed_data if f in EDITABLE}
        workflow_update(workflow=obj, data=changed)

    # -- columns and fields
    @admin.display(description="versions", ordering="version_count")
    def version_count(self, workflow: Workflow) -> int:
        return workflow.version_count

    @admin.display(description="active version")
    def active_version_link(self, workflow: Workflow) -> str:
        return admin_link(workflow.active_version) if workflow.active_version else "-"

    @admin.display(description="runs and events")
    def activity(self, workflow: Workflow) -> str:
        runs = Run.objects.filter(version__workflow=workflow).count()
        events = workflow.events.count()
        return format_html_join(" · ", "{}", [
            (changelist_link(Run, f"{runs} run(s)", version__workflow__id__exact=workflow.pk),),
            (changelist_link(Event, f"{events} event(s)", workflow__id__exact=workflow.pk),),
        ])

    # -- rotating the webhook secret
    @admin.action(description="Rotate the webhook secret (the old one stops working)",
                  permissions=["change"])
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        for workflow in queryset:
            secret = webhook_rotate(workflow)
            # Derived, never stored: this message is the one place it is shown.
            self.message_user(request, format_html(
                "New webhook secret of {}: <code>{}</code> — copy it now, it is shown once; "
                "the old secret no longer verifies deliveries.", workflow.slug, secret),
                level=messages.SUCCESS)
            if not workflow.triggers.filter(active=True, integration="webhook").exists():
                self.message_user(request, f"{workflow.slug} has no active webhook trigger; "
                                           'add @trigger(integration="webhook") and register '
                                           "it to accept deliveries.", level=messages.WARNING)

    # -- registering a script
    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.register_view)  # staff only, CSRF protected
        return [path("register/", view, name="workflows_workflow_register"),
                *super().get_urls()]

    def register_view(self, request: HttpRequest) -> HttpResponse:
        posted = request.method == "POST"
        form = WorkflowRegisterForm(request.POST, request.FILES) if posted else \
            WorkflowRegisterForm()
        if posted and form.is_valid():
            registered = self._register(request, form)
            if registered is not None:
                url = reverse("admin:workflows_workflow_change", args=[registered.workflow.pk])
                return HttpResponseRedirect(url)
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": "Register a workflow", "form": form}
        return TemplateResponse(request, "admin/workflows/workflow/register.html", context)

    def _register(self, request: HttpRequest, form: WorkflowRegisterForm) -> Any:
        data = form.cleaned_data
        try:
            registered = workflow_upload(source=data["source"], slug=data["slug"],
                                         filename=data["file_name"])
        except ScriptError as exc:
            form.add_error(None, f"Not registered: {script_error_text(exc, data['file_name'])}")
            return None
        except ApplicationError as exc:
            form.add_error(None, f"Not registered: {exc.message}")
            return None
        triggers = ", ".join(f"{t.integration}/{t.event}" for t in registered.triggers)
        self.message_user(request, (
            f"Registered {registered.workflow.slug}: version {registered.version.sha256[:12]} "
            f"is active ({'script' if registered.loaded.is_script else 'pipeline'}; "
            f"triggers: {triggers or 'none'})."), level=messages.SUCCESS)
        return registered


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


# -- events ------------------------------------------------------------------------------
@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Incoming events as stored, once per idempotency key, with the runs they started."""

    list_display = ["id", "source", "key", "status", "workflow", "received_at", "run_count"]
    list_filter = ["source", "status", "workflow"]
    search_fields = ["key"]
    list_select_related = ["workflow"]
    date_hierarchy = "received_at"
    fieldsets = [
        (None, {"fields": ["source", "key", "status", "detail", "workflow", "received_at",
                           "body_sha256"]}),
        ("Runs", {"fields": ["run_links"]}),
        ("Data", {"fields": ["data_pretty"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        return super().get_queryset(request).annotate(runs_started=Count("runs"))

    @admin.display(description="runs", ordering="runs_started")
    def run_count(self, event: Event) -> str:
        return changelist_link(Run, str(event.runs_started), event__id__exact=event.pk)

    @admin.display(description="runs")
    def run_links(self, event: Event) -> str:
        runs = event.runs.select_related("version__workflow").order_by("created_at")
        if not runs:
            return "-"
        return format_html_join(mark_safe("<br>"), "{} ({}, {})", (
            (admin_link(run, run.id), run.version.workflow.slug, run.status) for run in runs))

    @admin.display(description="data")
    def data_pretty(self, event: Event) -> str:
        return pretty_json(event.data)
