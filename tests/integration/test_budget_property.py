"""The budget governor's property (issue 3; CONTRACTS.md §6, §8), on real worker processes.

A map of 50 items runs on prefork Celery workers; each item makes one to three
``ai.generate`` calls whose prompt length and output cap come from the item alone (a
replay makes the same calls), against the fake OpenAI server, which answers each call with
a completion somewhere between 1 token and its cap. For every trial's limit, far below
what the calls could cost together:

- the fake server's own count of what it billed never exceeds the limit;
- the run ends halted on its budget;
- the ledger balances: nothing is left reserved, spent equals the sum of the settled
  reservations and, when no worker died, exactly what the server billed.

In the kill trials a worker is SIGKILLed while its calls are in flight; the server still
bills them. After a resume the dead owner's reservations are settled at their worst case,
so the ledger covers what was billed and the limit still holds.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from apps.runs.models import Reservation, Run, RunBudget, StepRun
from apps.runs.services.liveness import is_alive
from apps.runs.services.runs import run_create, run_resume, run_start
from apps.workflows.services import workflow_version_from_path
from flowops import UsageLimits
from tests.fakes.fixtures import fake_openai  # noqa: F401
from tests.fakes.openai_server import CHAT, FakeOpenAIServer, Reply
from tests.integration.conftest import Worker
from tests.integration.helpers import describe, wait_for_run, wait_until

pytestmark = pytest.mark.integration

ITEMS = 50
MINI = {"input": Decimal("0.15"), "output": Decimal("0.6")}  # gpt-4o-mini, $ per 1M tokens

FLOW = '''
import random as stdlib_random

from flowops import ai


def calls_of(item: int) -> list[tuple[str, int]]:
    """The calls of one item, from the item alone: a replay makes the same calls. Digits
    are at most 3 to an o200k token, so the fake server's count (4 characters a token) stays
    below the reservation's prompt bound."""
    rng = stdlib_random.Random(item)
    calls = []
    for n in range(rng.randint(1, 3)):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(40, 3000)))
        calls.append((f"item {item} call {n}: {digits}", rng.randint(1, 400)))
    return calls


@step
def ask(item: int) -> int:
    chars = 0
    for prompt, cap in calls_of(item):
        chars += len(ai.generate(prompt, model="openai:gpt-4o-mini", max_tokens=cap))
    return chars


@step
def total(sizes: list[int]) -> int:
    return sum(sizes)


pipeline = Step.map_over("each", ask) >> total
'''


@dataclass(frozen=True)
class Trial:
    seed: int
    tokens: int | None = None
    usd: Decimal | None = None

    @property
    def limits(self) -> UsageLimits:
        return UsageLimits(total_tokens_limit=self.tokens, total_cost_usd_limit=self.usd)


def _trials(seeds: range, *, kill: bool = False) -> list[Trial]:
    """Random limits that every trial must hit: 50 items cost ~100k tokens at worst, ~$0.04."""
    trials = []
    for seed in seeds:
        rng = random.Random(seed)
        # a kill trial must still run when the doomed worker's calls are in flight
        tokens = rng.randint(15_000, 30_000) if kill else rng.randint(2_000, 20_000)
        usd = Decimal(rng.randint(30, 60) if kill else rng.randint(2, 40)) / 10_000
        kind = seed % 3  # tokens only, dollars only, or both
        trials.append(Trial(seed, tokens=None if kind == 1 else tokens,
                            usd=None if kind == 0 else usd))
    return trials


def _responder(*, slow: bool):
    """Usage within each call's reservation: the default prompt count (below our bound)
    and a completion between 1 and the cap, both fixed by the request (a repeated call gets
    the same answer). Slow answers (0.4-1.2 s) leave time to kill a worker mid-call."""

    def respond(endpoint: str, body: dict) -> Reply | None:
        if endpoint != CHAT:
            return None
        h = int(hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode())
                .hexdigest(), 16)
        cap = body.get("max_completion_tokens") or 16
        delay = 0.4 + (h >> 32) % 800 / 1000 if slow else (h >> 32) % 20 / 1000
        return Reply(completion_tokens=1 + h % cap, delay=delay)

    return respond


def _env(fake: FakeOpenAIServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": fake.base_url,
            "FLOWOPS_AI_BACKOFF_S": "0.01", "FLOWOPS_AI_TIMEOUT": "10"}


def _start(path: Path, trial: Trial) -> Run:
    version, loaded = workflow_version_from_path(path)
    items = [trial.seed * 1000 + i for i in range(ITEMS)]
    run = run_create(version=version, loaded=loaded, input=items, limits=trial.limits)
    run_start(run)
    return run


def _quiet(run_id: str, fake: FakeOpenAIServer) -> Run:
    """The run is terminal, no live process works on it and the server answered all."""
    run = wait_for_run(run_id, statuses=set(Run.TERMINAL))
    wait_until(lambda: not any(is_alive(s) for s in StepRun.objects.filter(
        run_id=run_id, status=StepRun.Status.RUNNING)), "no live step is left")
    fake.wait_idle(timeout=30)
    run.refresh_from_db()
    return run


def _billed_usd(fake: FakeOpenAIServer) -> Decimal:
    return sum((r["prompt_tokens"] * MINI["input"] + r["completion_tokens"] * MINI["output"])
               / 1_000_000 for r in fake.records() if r["billed"]) or Decimal(0)


def _pool_pids(worker: Worker) -> set[int]:
    return {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}


def _in_a_call(run: Run, fake: FakeOpenAIServer, pids: set[int] | None = None) -> bool:
    """The server holds a request of a step that runs in one of ``pids`` (any process when
    None) with its reservation held, some answers were billed already and the run runs."""
    if fake.stats().responses_ok < 2 or not Run.objects.filter(
            pk=run.pk, status=Run.Status.RUNNING).exists():
        return False
    first = run.input[0]
    keys = {f"each[{int(m[1]) - first}]/ask" for r in fake.records()
            if r["outcome"] == "pending" and r["body"]
            and (m := re.match(r"item (\d+) call", r["body"]["messages"][-1]["content"]))}
    steps = StepRun.objects.filter(run=run, status=StepRun.Status.RUNNING, key__in=keys)
    if pids is not None:
        steps = steps.filter(owner_pid__in=pids)
    return Reservation.objects.filter(run=run, state=Reservation.State.RESERVED,
                                      step_key__in=steps.values("key")).exists()


def _check(run: Run, fake: FakeOpenAIServer, trial: Trial, *, killed: bool
           ) -> tuple[str, set[int]]:
    """The property; returns a line for the log and the processes that made the calls."""
    stats = fake.stats()
    billed, billed_usd = stats.billed_tokens, _billed_usd(fake)
    budget = RunBudget.objects.get(run=run)
    rows = Reservation.objects.filter(run=run)
    settled = list(rows.filter(state=Reservation.State.SETTLED))
    orphans = [r for r in settled if (r.usage or {}).get("orphaned")]
    answered = [r for r in settled if not (r.usage or {}).get("orphaned")]
    spent, spent_usd = budget.spent_tokens, budget.spent_usd
    pids = set(StepRun.objects.filter(run=run, key__in={r.step_key for r in settled})
               .values_list("owner_pid", flat=True))
    line = (f"seed={trial.seed} limit={trial.tokens} tokens / ${trial.usd}: billed {billed} "
            f"tokens ${billed_usd:.8f} in {stats.responses_ok} answers from {len(pids)} "
            f"processes; ledger spent {spent} tokens ${spent_usd} in {len(settled)} settled, "
            f"{len(orphans)} orphans at {sum(r.tokens for r in orphans)} tokens covering "
            f"{billed - sum(r.settled_tokens for r in answered)} billed; write failures "
            f"{stats.write_failures}; steps taken over "
            f"{StepRun.objects.filter(run=run, lost__gt=0).count()}")

    # the run halted on its budget, not on an overrun
    assert run.status == Run.Status.HALTED, describe(run.id)
    assert run.error["type"] == "BudgetExceeded", run.error
    assert not run.error["message"].startswith("overrun"), run.error
    # the server never billed past the limit, nor did the ledger record more
    if trial.tokens is not None:
        assert billed <= trial.tokens, line
        assert spent <= trial.tokens, line
    if trial.usd is not None:
        assert billed_usd <= trial.usd, line
        assert spent_usd <= trial.usd, line
    # the ledger balances: nothing is left reserved, spent is what was settled
    assert not rows.filter(state=Reservation.State.RESERVED).exists(), line
    assert (budget.reserved_tokens, budget.reserved_usd) == (0, 0), line
    assert spent == sum(r.settled_tokens for r in settled), line
    assert spent_usd == sum((r.settled_usd for r in settled), Decimal(0)), line
    assert stats.responses_ok > 0, line
    if not killed:
        # every billed answer was settled with its own usage, and only those
        assert orphans == [], line
        assert len(settled) == stats.responses_ok, line
        assert spent == billed, line
        assert abs(spent_usd - billed_usd) <= Decimal("0.000000005") * len(settled), line
    else:
        # the server billed calls whose worker died before it read the answer; their
        # orphaned reservations count at their worst case, which covers that
        assert orphans, line
        assert all(r.settled_tokens == r.tokens and r.settled_usd == r.usd for r in orphans)
        assert sum(r.settled_tokens for r in answered) < billed <= spent, line
        assert billed_usd <= spent_usd, line
    return line, pids


def test_parallel_calls_never_bill_past_the_limit(fake_openai, start_worker,  # noqa: F811
                                                  write_flow):
    # given two workers of three processes each, and a fast server
    fake_openai.set_responder(_responder(slow=False))
    path = write_flow(FLOW)
    for _ in range(2):
        start_worker(concurrency=3, env=_env(fake_openai))

    lines, pids = [], set()
    for trial in _trials(range(1, 8)):
        # when 50 items race for a limit a few of them could fill
        run = _quiet(_start(path, trial).id, fake_openai)

        # then the server billed at most the limit, and the ledger says exactly that
        line, callers = _check(run, fake_openai, trial, killed=False)
        lines.append(line)
        pids |= callers
        fake_openai.reset()
    print("\n" + "\n".join(lines))
    assert len(pids) >= 3  # the calls raced in several processes of both workers


def test_calls_of_a_killed_worker_are_settled_at_their_worst_case(
        fake_openai, start_worker, write_flow):  # noqa: F811
    fake_openai.set_responder(_responder(slow=True))
    path = write_flow(FLOW)
    env = _env(fake_openai)
    first, second = _trials(range(101, 103), kill=True)
    lines = []

    # given two workers, one of them in a call
    doomed, survivor = (start_worker(concurrency=3, env=env) for _ in range(2))
    run = _start(path, first)
    pids = _pool_pids(doomed)
    wait_until(lambda: _in_a_call(run, fake_openai, pids), "a call of the doomed worker",
               timeout=30)
    # when it is SIGKILLed, the other goes on until the run halts, with orphans reserved
    doomed.kill()
    run = _quiet(run.id, fake_openai)
    assert run.status == Run.Status.HALTED, describe(run.id)
    assert RunBudget.objects.get(run=run).reserved_tokens > 0
    # and the halted run is resumed (its limit is not spent: the orphans still hold it)
    assert survivor.process.poll() is None
    run_resume(run_id=run.id)
    # then the orphans are settled at their worst case and the run halts again
    lines.append(_check(_quiet(run.id, fake_openai), fake_openai, first, killed=True)[0])
    fake_openai.reset()

    # given a lone worker with calls in flight
    run = _start(path, second)
    wait_until(lambda: _in_a_call(run, fake_openai), "a call is in flight", timeout=30)
    # when the whole worker is SIGKILLed, the running run is resumed and a new worker comes
    # (resumed first: the new worker would at once take the old canvas's queued items,
    # and a resume refuses a run with a live step)
    survivor.kill()
    assert Reservation.objects.filter(run=run, state=Reservation.State.RESERVED).exists()
    fake_openai.wait_idle(timeout=30)  # it answers the dead worker's calls, and bills them
    run_resume(run_id=run.id)
    start_worker(concurrency=3, env=env)
    # then the run halts within its limit, and the orphans cover what the server billed
    lines.append(_check(_quiet(run.id, fake_openai), fake_openai, second, killed=True)[0])
    print("\n" + "\n".join(lines))
