from django.db import models


class Workflow(models.Model):
    """A named workflow; its code lives in immutable versions."""

    slug = models.SlugField(unique=True, max_length=100, help_text="Stable name used by the CLI.")
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


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
