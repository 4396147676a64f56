"""Admin for runs: a read-only window on runs, their steps and journal (STYLE.md: admin).

Runs are written by the engine only. Nothing here edits a row by hand; the actions call
the run services, exactly as the CLI and the API do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from apps.core.exceptions import ApplicationError
from apps.runs.models import JournalEntry, Reservation, Run, RunBudget, StepRun
from apps.runs.services import runs as run_services

DONE_STEP_STATUSES = [StepRun.Status.SUCCEEDED, StepRun.Status.SKIPPED]
PREVIEW_CHARS = 80


# -- display helpers -------------------------------------------------------------------
def pretty_json(value: Any) -> str:
    if value is None:
        return "-"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s"


def error_part(error: dict | None, part: str) -> str:
    return (error or {}).get(part) or ""


def admin_link(obj: Any, text: str | None = None) -> str:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or str(obj))


def changelist_link(model: type, text: str, **filters: Any) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = urlencode(filters)
    return format_html('<a href="{}?{}">{}</a>', url, query, text)


class ReadOnlyAdminMixin:
    """Rows the engine writes: visible to staff, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# -- steps -----------------------------------------------------------------------------
class StepErrorColumns:
    """The parts of ``StepRun.error`` ({type, message, traceback}) as columns."""

    @admin.display(description="error type")
    def error_type(self, step: StepRun) -> str:
        return error_part(step.error, "type")

    @admin.display(description="error message")
    def error_message(self, step: StepRun) -> str:
        return error_part(step.error, "message")


class StepRunInline(StepErrorColumns, ReadOnlyAdminMixin, admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    show_change_link = True  # the step's page holds the full output and the traceback
    ordering = ["id"]
    fields = ["key", "kind", "status", "attempt", "retries", "lost", "duration_ms",
              "cache_hit", "output_preview", "error_type", "error_message", "decided_by"]
    readonly_fields = fields

    @admin.display(description="output")
    def output_preview(self, step: StepRun) -> str:
        return preview(step.output)


@admin.register(StepRun)
class StepRunAdmin(StepErrorColumns, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "run_link", "key", "kind", "status", "attempt", "retries", "lost",
                    "duration_ms", "cache_hit", "error_type"]
    list_filter = ["status", "kind"]
    search_fields = ["key", "=run__id"]
    list_select_related = ["run"]
    fieldsets = [
        (None, {"fields": ["run_link", "key", "name", "kind", "status", "decided_by"]}),
        ("Attempts", {"fields": ["attempt", "retries", "lost", "owner_host", "owner_pid",
                                 "owner_started", "heartbeat_at"]}),
        ("Timing and spend", {"fields": ["started_at", "finished_at", "duration_ms",
                                         "cache_hit", "cost_usd", "tokens"]}),
        ("Result", {"fields": ["output_pretty", "context_pretty"]}),
        ("Error", {"fields": ["error_type", "error_message", "error_traceback"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    @admin.display(description="run", ordering="run")
    def run_link(self, step: StepRun) -> str:
        return admin_link(step.run, step.run_id)

    @admin.display(description="output")
    def output_pretty(self, step: StepRun) -> str:
        return pretty_json(step.output)

    @admin.display(description="context")
    def context_pretty(self, step: StepRun) -> str:
        return pretty_json(step.context)

    @admin.display(description="traceback")
    def error_traceback(self, step: StepRun) -> str:
        traceback = error_part(step.error, "traceback")
        return format_html("<pre>{}</pre>", traceback) if traceback else "-"


# -- journal ---------------------------------------------------------------------------
@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "run_id", "scope", "seq", "call", "effect", "state", "attempt",
                    "created_at"]
    list_filter = ["state", "effect"]
    search_fields = ["=run__id", "call"]
    fieldsets = [
        (None, {"fields": ["run_link", "scope", "seq", "call", "args_hash", "effect", "state",
                           "attempt", "created_at"]}),
        ("Outcome", {"fields": ["result_pretty", "error_pretty"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    @admin.display(description="run", ordering="run")
    def run_link(self, entry: JournalEntry) -> str:
        return admin_link(entry.run, entry.run_id)

    @admin.display(description="result")
    def result_pretty(self, entry: JournalEntry) -> str:
        return pretty_json(entry.result)

    @admin.display(description="error")
    def error_pretty(self, entry: JournalEntry) -> str:
        return pretty_json(entry.error)


# -- runs ------------------------------------------------------------------------------
class RunBudgetInline(ReadOnlyAdminMixin, admin.StackedInline):
    """The run's ledger: limits, spend, what is reserved, and a link to its calls."""

    model = RunBudget
    can_delete = False
    fields = ["limit_usd", "limit_tokens", "spent_usd", "spent_tokens", "reserved_usd",
              "reserved_tokens", "calls"]
    readonly_fields = fields

    @admin.display(description="calls")
    def calls(self, budget: RunBudget) -> str:
        return changelist_link(Reservation, "spend per call", run__id__exact=budget.run_id)


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Spend per model call: reserved worst case and settled usage."""

    list_display = ["id", "run_id", "step_key", "call", "model", "state", "usd", "tokens",
                    "settled_usd", "settled_tokens", "created_at"]
    list_filter = ["state", "model"]
    search_fields = ["=run__id", "step_key", "call"]


@admin.register(Run)
class RunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "workflow_slug", "status", "driver", "created_at", "started_at",
                    "finished_at", "duration", "progress"]
    list_filter = ["status", "driver", "version__workflow"]
    search_fields = ["id", "version__workflow__slug"]
    date_hierarchy = "created_at"
    list_select_related = ["version__workflow"]
    inlines = [RunBudgetInline, StepRunInline]
    actions = ["resume_runs", "cancel_runs", "approve_runs", "reject_runs"]
    fieldsets = [
        (None, {"fields": ["id", "workflow_link", "version_link", "status", "driver",
                           "progress", "related"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "duration"]}),
        ("Data", {"fields": ["input_pretty", "initial_context_pretty", "output_pretty"]}),
        ("Origin", {"fields": ["origin"]}),
        ("Stop", {"fields": ["error_pretty", "paused_step_key", "pause_message",
                             "waiting_on"]}),
        ("Engine", {"fields": ["dispatch_generation"], "classes": ["collapse"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        # Same counting as selectors.run_progress, for the whole page in one query.
        counted = ~Q(steps__kind="decision")
        return super().get_queryset(request).annotate(
            steps_total=Count("steps", filter=counted),
            steps_done=Count("steps", filter=counted & Q(steps__status__in=DONE_STEP_STATUSES)))

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Who may resume, cancel, approve or reject: holders of Django's change permission
        (the admin itself never changes a run, see ReadOnlyAdminMixin)."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    # -- columns and fields
    @admin.display(description="workflow", ordering="version__workflow__slug")
    def workflow_slug(self, run: Run) -> str:
        return run.version.workflow.slug

    @admin.display(description="workflow")
    def workflow_link(self, run: Run) -> str:
        return admin_link(run.version.workflow)

    @admin.display(description="version")
    def version_link(self, run: Run) -> str:
        return admin_link(run.version)

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        if run.started_at is None or run.finished_at is None:
            return "-"
        return format_duration(run.finished_at - run.started_at)

    @admin.display(description="steps done")
    def progress(self, run: Run) -> str:
        return f"{run.steps_done}/{run.steps_total}"

    @admin.display(description="started by")
    def origin(self, run: Run) -> str:
        parts = []
        if run.event is not None:
            parts.append(format_html("event {}", str(run.event)))
        if run.trigger is not None:
            parts.append(format_html("trigger {}/{} (line {})", run.trigger.integration,
                                     run.trigger.event, run.trigger.line))
        if run.parent is not None:
            parts.append(format_html("parent run {}", admin_link(run.parent, run.parent.id)))
        children = run.children.count()
        if children:
            parts.append(changelist_link(Run, f"{children} child run(s)",
                                         parent__id__exact=run.id))
        return format_html_join(" · ", "{}", ((p,) for p in parts)) if parts else "-"

    @admin.display(description="related")
    def related(self, run: Run) -> str:
        return format_html("{} · {}",
                           changelist_link(JournalEntry, "journal", run__id__exact=run.id),
                           changelist_link(StepRun, "all steps", run__id__exact=run.id))

    @admin.display(description="input")
    def input_pretty(self, run: Run) -> str:
        return pretty_json(run.input)

    @admin.display(description="initial context")
    def initial_context_pretty(self, run: Run) -> str:
        return pretty_json(run.initial_context)

    @admin.display(description="output")
    def output_pretty(self, run: Run) -> str:
        return pretty_json(run.output)

    @admin.display(description="error")
    def error_pretty(self, run: Run) -> str:
        return pretty_json(run.error)

    # -- actions: each calls a run service and reports every run
    def _apply(self, request: HttpRequest, queryset: QuerySet[Run], verb: str,
               service: Callable[[str], Run]) -> None:
        for run_id in queryset.values_list("id", flat=True):
            try:
                run = service(run_id)
            except ApplicationError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
            else:
                self.message_user(request, f"{verb} run {run_id}; it is now {run.status}",
                                  level=messages.SUCCESS)

    @admin.action(description="Resume selected runs", permissions=["operate"])
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._apply(request, queryset, "resumed",
                    lambda run_id: run_services.run_resume(run_id=run_id))

    @admin.action(description="Cancel selected runs", permissions=["operate"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._apply(request, queryset, "cancelled",
                    lambda run_id: run_services.run_cancel(run_id=run_id))

    @admin.action(description="Approve selected paused runs (no input)",
                  permissions=["operate"])
    def approve_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        who = f"admin:{request.user.get_username()}"
        self._apply(request, queryset, "approved",
                    lambda run_id: run_services.run_approve(run_id=run_id, input=None,
                                                            decided_by=who))

    @admin.action(description="Reject selected paused runs", permissions=["operate"])
    def reject_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        reason = f"rejected in admin by {request.user.get_username()}"
        who = f"admin:{request.user.get_username()}"
        self._apply(request, queryset, "rejected",
                    lambda run_id: run_services.run_reject(run_id=run_id, reason=reason,
                                                           decided_by=who))
