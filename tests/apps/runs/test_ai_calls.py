"""AI calls in runs, with the real ``openai`` client over HTTP to a local fake server.

Each test runs a workflow embedded on PostgreSQL and compares the run's ledger with the
fake server's own count of what it billed.
"""

from __future__ import annotations

from decimal import Decimal

from apps.runs.models import Reservation, Run, RunBudget, StepRun
from apps.runs.services.runs import run_create, run_resume, run_start
from flowops import UsageLimits
from tests.apps.runs.conftest import EMBEDDED

pytestmark = EMBEDDED

MINI = {"input": Decimal("0.15"), "cached": Decimal("0.075"), "output": Decimal("0.6")}

ASK = """
    from pydantic import BaseModel
    from flowops import ai, step

    class Order(BaseModel):
        item: str
        qty: int

    @step
    def ask(text: str) -> str:
        return ai.generate(text, model="openai:gpt-4o-mini", max_tokens=50)

    @step
    def order(text: str) -> Order:
        return ai.extract(text, Order, model="openai:gpt-4o-mini", max_tokens=50)

    pipeline = ask >> order
"""


def _run(make_flow, source: str, data, *, usd: str | None = None, tokens: int | None = None):
    flow = make_flow(source)
    limits = UsageLimits(total_cost_usd_limit=Decimal(usd) if usd else None,
                         total_tokens_limit=tokens)
    run = run_create(version=flow.version, loaded=flow.loaded, input=data, limits=limits)
    run_start(run)
    run.refresh_from_db()
    return run


def _cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * MINI["input"] + cached * MINI["cached"]
            + completion * MINI["output"]) / 1_000_000


def test_usage_and_cost_are_recorded_per_call_step_and_run(make_flow, openai_env):
    # given scripted answers with known usage
    openai_env.reply("hi there", prompt_tokens=100, completion_tokens=20, cached_tokens=40)
    openai_env.reply({"item": "apple", "qty": 2}, prompt_tokens=60, completion_tokens=10)

    # when (a prompt long enough that the scripted usage fits its reservation)
    run = _run(make_flow, ASK, "apple " * 200, usd="1")

    # then the outputs are the model's, the costs are the prices times the usage
    steps = {s.key: s for s in StepRun.objects.filter(run=run)}
    budget = RunBudget.objects.get(run=run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.output == {"item": "apple", "qty": 2}
    assert steps["ask"].output == "hi there"
    assert (steps["ask"].tokens, steps["ask"].cost_usd) == (120, _cost(100, 20, 40))
    assert (steps["order"].tokens, steps["order"].cost_usd) == (70, _cost(60, 10))
    assert (budget.spent_tokens, budget.spent_usd, budget.reserved_usd) == (
        190, _cost(100, 20, 40) + _cost(60, 10), 0)
    assert openai_env.stats().billed_tokens == 190
    sent = openai_env.requests
    assert sent[0]["max_completion_tokens"] == 50
    assert sent[1]["response_format"]["type"] == "json_schema"


def test_usage_above_the_reservation_halts_the_run_as_an_overrun(make_flow, openai_env):
    # given a server that reports more prompt tokens than the prompt can have
    openai_env.reply("hi", prompt_tokens=5000, completion_tokens=2)

    run = _run(make_flow, ASK, "hello", usd="1")

    assert run.status == Run.Status.HALTED
    assert run.error["message"].startswith("overrun in ask")
    assert RunBudget.objects.get(run=run).spent_tokens == 5002
    assert len(openai_env.requests) == 1


def test_a_rate_limit_is_retried_with_a_fresh_reservation(make_flow, openai_env):
    openai_env.rate_limit(retry_after=0)
    openai_env.reply("ok", prompt_tokens=10, completion_tokens=2)
    openai_env.reply({"item": "x", "qty": 1}, prompt_tokens=10, completion_tokens=2)

    run = _run(make_flow, ASK, "hello", usd="1")

    calls = list(Reservation.objects.filter(run=run).order_by("id").values_list(
        "step_key", "state"))
    assert run.status == Run.Status.SUCCEEDED
    assert calls == [("ask", "released"), ("ask", "settled"), ("order", "settled")]
    assert RunBudget.objects.get(run=run).spent_tokens == openai_env.stats().billed_tokens == 24


def test_a_bad_request_fails_the_step_with_the_providers_message(make_flow, openai_env):
    openai_env.bad_request("max_completion_tokens is too large", code="bad_cap")

    run = _run(make_flow, ASK, "hello", usd="1")

    assert run.status == Run.Status.FAILED
    assert run.error["step_key"] == "ask"
    assert "max_completion_tokens is too large" in run.error["message"]
    assert RunBudget.objects.get(run=run).reserved_usd == 0
    assert Reservation.objects.get(run=run).state == "released"


def test_a_timeout_is_settled_at_its_worst_case_and_retried(make_flow, openai_env):
    # given a first answer slower than the client's 1 s timeout
    openai_env.slow(1.5, "late")
    openai_env.reply("ok", prompt_tokens=10, completion_tokens=2)
    openai_env.reply({"item": "x", "qty": 1}, prompt_tokens=10, completion_tokens=2)

    run = _run(make_flow, ASK, "hello", usd="1")
    billed = openai_env.wait_idle().billed_tokens

    # then the lost attempt counts at its worst case, which covers what was billed for it
    first = Reservation.objects.filter(run=run).order_by("id").first()
    budget = RunBudget.objects.get(run=run)
    assert run.status == Run.Status.SUCCEEDED
    assert first.state == "settled" and first.settled_tokens == first.tokens
    assert budget.spent_tokens >= billed


def test_a_call_that_would_cross_the_limit_is_never_sent(make_flow, openai_env):
    # given a budget below one call's worst case (prompt bound + the 50-token cap)
    run = _run(make_flow, ASK, "hello", tokens=40)

    assert run.status == Run.Status.HALTED
    assert run.error["step_key"] == "ask"
    assert run.error["limit_tokens"] == 40
    assert openai_env.stats().billed_tokens == 0
    assert openai_env.requests == []


def test_resume_with_a_higher_limit_does_not_pay_again_for_done_steps(make_flow, openai_env):
    # given a run halted before `order` after paying for `ask`
    openai_env.reply("hi", prompt_tokens=10, completion_tokens=2)
    flow = make_flow(ASK)
    run = run_create(version=flow.version, loaded=flow.loaded, input="hello",
                     limits=UsageLimits(total_tokens_limit=120))
    run_start(run)
    run.refresh_from_db()
    assert (run.status, run.error["step_key"]) == (Run.Status.HALTED, "order")

    # when it resumes with room for the rest
    openai_env.reply({"item": "x", "qty": 1}, prompt_tokens=10, completion_tokens=2)
    run = run_resume(run_id=run.id, limits=UsageLimits(total_tokens_limit=1000))

    # then only `order` was asked for again
    assert run.status == Run.Status.SUCCEEDED
    assert len(openai_env.requests) == 2
    assert RunBudget.objects.get(run=run).spent_tokens == 24


def test_a_model_without_a_price_is_refused_under_a_usd_limit(make_flow, openai_env):
    source = ASK.replace("openai:gpt-4o-mini", "openai:my-private-model")

    run = _run(make_flow, source, "hello", usd="1")

    assert run.status == Run.Status.FAILED
    assert "no price for openai:my-private-model; set FLOWOPS_MODEL_PRICES" in (
        run.error["message"])
    assert openai_env.requests == []


def test_offline_classify_returns_one_of_the_labels(make_flow, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    source = """
        from flowops import ai, step

        @step
        def intent(text: str) -> str:
            return ai.classify(text, labels=["question", "feedback", "complaint"])

        pipeline = intent
    """
    run = _run(make_flow, source, "Why does my invoice show twice?", tokens=10_000)

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == "question"
    assert RunBudget.objects.get(run=run).spent_tokens > 0
