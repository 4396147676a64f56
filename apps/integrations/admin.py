"""Admin for integration records: Slack approval requests, who decided them, and the
ones Slack has not shown yet (with the error and a way to post them again)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.integrations.models import SlackApproval
from apps.integrations.slack.approvals import approval_post
from apps.runs.admin import ReadOnlyAdminMixin, admin_link


class PostedFilter(admin.SimpleListFilter):
    title = "posted"
    parameter_name = "posted"

    def lookups(self, request, model_admin):
        return [("yes", "posted"), ("no", "not posted")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(ts="")
        if self.value() == "no":
            return queryset.filter(ts="")
        return queryset


@admin.register(SlackApproval)
class SlackApprovalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "run_link", "step_key", "channel", "status", "decided_by_name",
                    "decided_by", "decided_at", "posted", "post_attempts", "post_error"]
    list_filter = ["status", PostedFilter, "channel"]
    search_fields = ["=run__id", "step_key", "decided_by", "decided_by_name"]
    list_select_related = ["run"]
    actions = ["post_again"]
    fieldsets = [
        (None, {"fields": ["run_link", "step_key", "status"]}),
        ("Decision", {"fields": ["decided_by", "decided_by_name", "decided_at"]}),
        ("Message", {"fields": ["channel", "channel_id", "ts", "posted_at", "post_attempts",
                                "post_error", "next_post_at", "created_at"]}),
    ]
    readonly_fields = [f for _, spec in fieldsets for f in spec["fields"]]

    @admin.display(description="run", ordering="run")
    def run_link(self, approval: SlackApproval) -> str:
        return admin_link(approval.run, approval.run_id)

    @admin.display(description="posted", boolean=True)
    def posted(self, approval: SlackApproval) -> bool:
        return approval.is_posted

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("runs.change_run")

    @admin.action(description="Post selected unposted approvals again",
                  permissions=["operate"])
    def post_again(self, request: HttpRequest, queryset: QuerySet[SlackApproval]) -> None:
        for approval in queryset.filter(ts=""):
            if approval_post(approval):
                self.message_user(request, f"posted {approval}", level=messages.SUCCESS)
            else:
                approval.refresh_from_db()
                self.message_user(request, f"not posted {approval}: "
                                           f"{approval.post_error or 'the run no longer waits'}",
                                  level=messages.ERROR)
