"""Integration records: Slack approval requests (apps/integrations/slack/approvals.py)."""

from __future__ import annotations

from django.db import models


class SlackApproval(models.Model):
    """The Slack message that asks for one human step of one run, and its answer.

    One row per (run, step): a pause that is seen again (a duplicate delivery, recovery)
    finds it and posts nothing more. ``ts`` empty means not posted yet: the recovery sweep
    posts it again.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="slack_approvals")
    step_key = models.CharField(max_length=500)
    channel = models.CharField(max_length=200, help_text="As the script names it (#approvals).")
    channel_id = models.CharField(max_length=50, blank=True)
    ts = models.CharField(max_length=50, blank=True,
                          help_text="The posted message's timestamp; empty: not posted yet.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    decided_by = models.CharField(
        max_length=200, blank=True,
        help_text="Who decided, as on the step: slack:<user id>, or api:/admin:<username> "
                  "when it was decided outside Slack.")
    decided_by_name = models.CharField(max_length=200, blank=True,
                                       help_text="The Slack user's name, for a click.")
    decided_at = models.DateTimeField(null=True, blank=True)
    post_attempts = models.PositiveIntegerField(default=0)
    # Set while one process posts, so that the pause hook and the sweep never both post;
    # a claim older than POST_CLAIM_S (its process died) may be taken over.
    post_claimed_at = models.DateTimeField(null=True, blank=True)
    post_error = models.TextField(blank=True, help_text="Why the last post failed.")
    next_post_at = models.DateTimeField(
        null=True, blank=True, help_text="After a failed post: when the recovery sweep may "
                                         "try again (it backs off).")
    created_at = models.DateTimeField(auto_now_add=True)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_key"], name="slack_approval_unique_step"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step_key} in {self.channel} ({self.status})"

    @property
    def is_posted(self) -> bool:
        return bool(self.ts)
