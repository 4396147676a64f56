from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from flowops.usage import UsageLimits

# The smallest amount the ledger holds (8 decimals): with ``decimal_places=8`` a value is
# at least this exactly when it is greater than 0.
LEDGER_UNIT = Decimal("0.00000001")


class Workflow(models.Model):
    """A named workflow; its code lives in immutable versions."""

    slug = models.SlugField(unique=True, max_length=100, help_text="Stable name used by the CLI.")
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    default_budget_usd = models.DecimalField(
        "default budget (USD)", max_digits=14, decimal_places=8, null=True, blank=True,
        validators=[MinValueValidator(
            LEDGER_UNIT, message="Default budget (USD) must be greater than 0; leave it empty "
                                 "for no default.")],
        help_text="Spend limit for new runs that are given no USD limit "
                  "(--budget-usd / UsageLimits); empty: no default.")
    # Not PositiveBigIntegerField: its form field checks ">= 0" first, with a message that
    # names no field; the validator below and the check constraint make it positive.
    default_budget_tokens = models.BigIntegerField(
        "default budget (tokens)", null=True, blank=True,
        validators=[MinValueValidator(
            1, message="Default budget (tokens) must be greater than 0; leave it empty for no "
                       "default.")],
        help_text="Token limit for new runs that are given no token limit "
                  "(--budget-tokens / UsageLimits); empty: no default.")
    config = models.JSONField(
        default=dict, blank=True,
        help_text='Settings the script reads as context.config. Secrets: {"$env": "NAME"} '
                  "reads the environment variable NAME on the worker; never paste a secret.")
    active_version = models.ForeignKey(
        "WorkflowVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The registered version: its triggers start runs, the API runs it.")
    webhook_nonce = models.CharField(
        max_length=64, blank=True,
        help_text="Rotating it changes the webhook secret (derived, never stored).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(default_budget_usd__isnull=True) | Q(default_budget_usd__gt=0),
                name="workflow_default_budget_usd_positive"),
            models.CheckConstraint(
                condition=Q(default_budget_tokens__isnull=True) | Q(default_budget_tokens__gt=0),
                name="workflow_default_budget_tokens_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def default_limits(self) -> UsageLimits:
        """The limits a new run of this workflow gets when it is given none."""
        return UsageLimits(total_cost_usd_limit=self.default_budget_usd,
                           total_tokens_limit=self.default_budget_tokens)


class WorkflowVersion(models.Model):
    """The exact source a run executes (CONTRACTS.md §4). Never edited after creation."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    sha256 = models.CharField(max_length=64, db_index=True)
    source = models.TextField()
    origin_path = models.CharField(max_length=1000, blank=True,
                                   help_text="Where the source was read from.")
    entry = models.CharField(max_length=200, default="pipeline",
                             help_text="The module-level name that holds the pipeline.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "sha256", "entry"],
                                    name="workflow_version_unique_source"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}@{self.sha256[:12]}"


class Trigger(models.Model):
    """An ``@trigger`` of a registered version; only the workflow's active version's match."""

    class Integration(models.TextChoices):
        SLACK = "slack"
        WEBHOOK = "webhook"
        SCHEDULE = "schedule"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.CASCADE,
                                related_name="triggers")
    integration = models.CharField(max_length=20, choices=Integration.choices)
    event = models.CharField(max_length=50)
    options = models.JSONField(default=dict, blank=True)
    line = models.PositiveIntegerField(null=True, blank=True,
                                       help_text="Line of the @trigger in the source.")
    active = models.BooleanField(default=True,
                                 help_text="Registration activates the new version's "
                                           "triggers and deactivates the old ones.")
    active_since = models.DateTimeField(
        default=timezone.now,
        help_text="When registration last activated it: a schedule never fires for a time "
                  "before this.")
    last_scheduled_for = models.DateTimeField(
        null=True, blank=True,
        help_text="Schedules: the latest scheduled time handled (a run started, or the tick "
                  "skipped); no earlier time fires after it.")

    class Meta:
        ordering = ["workflow__slug", "id"]
        indexes = [models.Index(fields=["integration", "event", "active"])]

    def __str__(self) -> str:
        return f"{self.workflow.slug}: {self.integration}/{self.event}"


class Event(models.Model):
    """An incoming event, stored once per idempotency key before any run starts.

    ``key`` is the source's own id: Slack's ``event_id``, the API's ``Idempotency-Key``
    (scoped by workflow), ``trigger:scheduled time`` for schedules. The row, its runs and
    the dedupe are one transaction, so a delivery that failed before commit is processed
    again on retry, and one that committed is never processed twice.
    """

    class Status(models.TextChoices):
        STARTED = "started", "runs started"
        IGNORED = "ignored", "started nothing (see detail)"

    source = models.CharField(max_length=20)
    key = models.CharField(max_length=300)
    body_sha256 = models.CharField(max_length=64)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, null=True, blank=True,
                                 related_name="events")
    data = models.JSONField(default=dict, blank=True,
                            help_text="The event as triggers see it (message, payload).")
    status = models.CharField(max_length=20, choices=Status.choices)
    detail = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["source", "key"],
                                               name="event_unique_key")]

    def __str__(self) -> str:
        return f"{self.source}:{self.key}"
