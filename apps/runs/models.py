"""Runs, their step checkpoints, the journal and the step cache (CONTRACTS.md §1, §6, §7)."""

from __future__ import annotations

import uuid

from django.db import models


def new_run_id() -> str:
    return uuid.uuid4().hex


class Run(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        PAUSED = "paused"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        HALTED = "halted"
        CANCELLED = "cancelled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.HALTED, Status.CANCELLED)

    id = models.CharField(primary_key=True, max_length=100, default=new_run_id)
    version = models.ForeignKey("workflows.WorkflowVersion", on_delete=models.PROTECT,
                                related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    driver = models.CharField(max_length=20, help_text="embedded or celery")
    input = models.JSONField(null=True, blank=True)
    initial_context = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True,
                             help_text="{step_key, type, message} of what stopped the run.")
    paused_step_key = models.CharField(max_length=500, blank=True)
    pause_message = models.TextField(blank=True)
    # Bumped by every dispatch of a fresh canvas; recovery compares-and-sets it so that
    # two recoverers never both dispatch the same frontier.
    dispatch_generation = models.PositiveIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When its last canvas was handed out.")
    event = models.ForeignKey("workflows.Event", on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="runs",
                              help_text="The incoming event that started it.")
    trigger = models.ForeignKey("workflows.Trigger", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="runs")
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="children",
                               help_text="The run whose flowops.start_run started it.")
    waiting_on = models.CharField(
        max_length=100, blank=True,
        help_text="The child run this paused run waits for (start_run(wait=True)).")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class StepRun(models.Model):
    """One node of a run's plan: its claim, its checkpoint, its outcome."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"
        CANCELLED = "cancelled"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=500)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # The fencing token: every claim increments it and the checkpoint requires it.
    attempt = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    lost = models.PositiveIntegerField(default=0, help_text="Times its worker died in it.")
    owner_host = models.CharField(max_length=255, blank=True)
    owner_pid = models.IntegerField(null=True, blank=True)
    owner_started = models.FloatField(null=True, blank=True,
                                      help_text="Owner process start time (guards PID reuse).")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    context = models.JSONField(null=True, blank=True, help_text="The run context after this node.")
    error = models.JSONField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    decided_by = models.CharField(
        max_length=200, blank=True,
        help_text="Who approved or rejected this human step (slack:U0123, api:ada, admin:ada, "
                  "cli:ada).")
    # On the join row of a parallel or map: how many branches it has, how many have not
    # arrived yet (the branch that brings it to 0 sends the join), and how many were
    # sent so far (with max_concurrency, each arrival sends the next).
    branches = models.PositiveIntegerField(null=True, blank=True)
    branches_open = models.IntegerField(null=True, blank=True)
    branches_sent = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="step_run_unique_key"),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="step_run_liveness")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.key} ({self.status})"


class JournalEntry(models.Model):
    """One journaled call (CONTRACTS.md §7), replayed instead of re-executed."""

    class State(models.TextChoices):
        INTENT = "intent"
        DONE = "done"
        ERROR = "error"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="journal")
    scope = models.CharField(max_length=500, help_text="Step key, or 'run' for scripts.")
    seq = models.PositiveIntegerField()
    call = models.CharField(max_length=200)
    args_hash = models.CharField(max_length=64)
    effect = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempt = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "scope", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "scope", "seq"], name="journal_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}/{self.seq}:{self.call}"


class CacheEntry(models.Model):
    """Outputs of ``Step.cached`` steps, keyed by step, source hash and input."""

    cache_key = models.CharField(max_length=64, unique=True)
    step_name = models.CharField(max_length=300)
    value = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.step_name}:{self.cache_key[:12]}"


class RunBudget(models.Model):
    """A run's money ledger (CONTRACTS.md §8): limits, what is spent, what is reserved."""

    run = models.OneToOneField(Run, primary_key=True, on_delete=models.CASCADE,
                               related_name="budget")
    limit_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True,
                                    help_text="Most the run may spend in USD; empty: no limit.")
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True,
                                                  help_text="Most tokens; empty: no limit.")
    spent_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    spent_tokens = models.PositiveBigIntegerField(default=0)
    reserved_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    reserved_tokens = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"budget of {self.run_id}"


class Reservation(models.Model):
    """One model call's worst case, held against the ledger until the call is settled."""

    class State(models.TextChoices):
        RESERVED = "reserved"
        SETTLED = "settled"
        RELEASED = "released"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="reservations")
    step_key = models.CharField(max_length=500)
    attempt = models.PositiveIntegerField()
    call = models.CharField(max_length=200)
    model = models.CharField(max_length=200)
    usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RESERVED)
    settled_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    settled_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    usage = models.JSONField(null=True, blank=True,
                             help_text="prompt, completion and cached tokens as reported.")
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["run", "state"], name="reservation_run_state")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step_key}:{self.call} {self.state}"
