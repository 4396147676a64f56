from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

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
