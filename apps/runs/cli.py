"""What the run commands share: exit codes, waiting, progress, reporting (CONTRACTS.md §2)."""

from __future__ import annotations

import json
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from django.core.management.base import CommandError
from django.db import connection
from pydantic import ValidationError

from apps.runs.models import Run
from apps.runs.selectors import run_document, run_progress
from apps.runs.services.budget import spend_of
from flowops._codec import describe_errors
from flowops.usage import UsageLimits

EXIT_CODES = {
    Run.Status.SUCCEEDED: 0,
    Run.Status.FAILED: 1,
    Run.Status.HALTED: 3,
    Run.Status.PAUSED: 4,
    Run.Status.CANCELLED: 5,
}
USAGE = 2
PROGRESS_AFTER_S = 2.0


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=USAGE)


def parse_json_option(name: str, raw: str | None, *, want_object: bool = False) -> Any:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise usage_error(f"{name}: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if want_object and not isinstance(value, dict):
        raise usage_error(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def add_budget_options(parser) -> None:
    parser.add_argument("--budget-usd", help="Halt before spend would cross this many USD.")
    parser.add_argument("--budget-tokens", help="Halt before usage would cross this many tokens.")


def limits_from(opts) -> UsageLimits | None:
    """UsageLimits from --budget-usd / --budget-tokens, or None when neither is given."""
    usd, tokens = opts.get("budget_usd"), opts.get("budget_tokens")
    if usd is None and tokens is None:
        return None
    try:
        usd_value = Decimal(usd) if usd is not None else None
    except InvalidOperation:
        raise usage_error(f"--budget-usd: not a number: {usd!r}") from None
    try:
        tokens_value = int(tokens) if tokens is not None else None
    except ValueError:
        raise usage_error(f"--budget-tokens: not a whole number: {tokens!r}") from None
    try:
        return UsageLimits(total_cost_usd_limit=usd_value, total_tokens_limit=tokens_value)
    except ValidationError as exc:
        problems = describe_errors(exc).replace("total_cost_usd_limit", "--budget-usd").replace(
            "total_tokens_limit", "--budget-tokens")
        raise usage_error(problems) from None


class Progress:
    """Prints "steps done/total" to stderr while a long run goes on."""

    def __init__(self, run_id: str, stream: TextIO):
        self.run_id = run_id
        self.stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="flowops-progress")

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        if self._stop.wait(PROGRESS_AFTER_S):
            return
        try:
            while not self._stop.is_set():
                done, total = run_progress(self.run_id)
                spend = spend_of(self.run_id)
                self.stream.write(f"[{self.run_id}] {done}/{total} steps done, "
                                  f"spent ${spend['usd']:.4f} ({spend['tokens']} tokens)\n")
                self.stream.flush()
                self._stop.wait(PROGRESS_AFTER_S)
        finally:
            connection.close()


def wait_for(run_id: str, *, poll_s: float = 0.2) -> Run:
    """Wait until a run is terminal or paused for a person (distributed runs, and
    embedded ones waiting for a child run that the dispatcher thread drives)."""
    while True:
        run = Run.objects.get(pk=run_id)
        if run.is_terminal or (run.status == Run.Status.PAUSED and not run.waiting_on):
            return run
        time.sleep(poll_s)


def report(run: Run, *, as_json: bool, stdout: TextIO = sys.stdout,
           stderr: TextIO = sys.stderr) -> int:
    """Print a run's outcome and return its exit code."""
    run.refresh_from_db()
    code = EXIT_CODES.get(run.status, 0)
    if as_json:
        stdout.write(json.dumps(run_document(run), default=str) + "\n")
        return code
    if run.status == Run.Status.SUCCEEDED:
        output = run.output
        stdout.write((output if isinstance(output, str) else json.dumps(output)) + "\n")
    elif run.status == Run.Status.PAUSED:
        stderr.write(f"run {run.id} paused at {run.paused_step_key}: {run.pause_message}\n"
                     f"approve with: python manage.py approve {run.id} [--input-json JSON]\n")
    elif run.status in (Run.Status.PENDING, Run.Status.RUNNING):
        stderr.write(f"run {run.id} accepted ({run.status})\n")
    else:
        error = run.error or {}
        stderr.write(f"run {run.id} {run.status}: {error.get('type', '')} in "
                     f"{error.get('step_key', '?')}: {error.get('message', '')}\n")
    return code
