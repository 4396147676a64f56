"""A workflow's default budget (admin) and a script's ``usage_limits`` give new runs their
limits, per limit, when the caller gives none (README: AI calls on a budget)."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from apps.runs.models import Run, RunBudget
from apps.runs.services.runs import run_create
from apps.workflows.models import Workflow
from apps.workflows.services import workflow_version_from_path
from flowops import UsageLimits
from flowops.exceptions import ScriptError
from tests.apps.runs.conftest import EMBEDDED

pytestmark = EMBEDDED

WORK = """
    from flowops import step

    @step
    def work(x: int) -> int:
        return x + 1

    pipeline = work
"""

ASK = """
    from flowops import ai, step

    @step
    def ask(text: str) -> str:
        return ai.generate(text, model="openai:gpt-4o-mini", max_tokens=50)

    @step
    def again(text: str) -> str:
        return ai.generate(text, model="openai:gpt-4o-mini", max_tokens=50)

    pipeline = ask >> again
"""


def set_defaults(flow, usd: str | None = None, tokens: int | None = None) -> None:
    Workflow.objects.filter(pk=flow.version.workflow_id).update(
        default_budget_usd=Decimal(usd) if usd else None, default_budget_tokens=tokens)


def limits_of(run: Run) -> tuple[Decimal | None, int | None]:
    budget = RunBudget.objects.get(run=run)
    return budget.limit_usd, budget.limit_tokens


def test_a_run_without_limits_gets_the_workflows_defaults(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25", tokens=5000)

    run = flow.create(1)

    assert limits_of(run) == (Decimal("0.25"), 5000)


def test_without_defaults_a_run_without_limits_has_none(make_flow):
    run = make_flow(WORK).create(1)

    assert limits_of(run) == (None, None)


def test_explicit_limits_win_over_the_defaults(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25", tokens=5000)

    run = run_create(version=flow.version, loaded=flow.loaded, input=1,
                     limits=UsageLimits(total_cost_usd_limit=Decimal("2"),
                                        total_tokens_limit=100))

    assert limits_of(run) == (Decimal("2"), 100)


def test_an_explicit_usd_limit_keeps_the_default_token_limit(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25", tokens=5000)

    run = run_create(version=flow.version, loaded=flow.loaded, input=1,
                     limits=UsageLimits(total_cost_usd_limit=Decimal("2")))

    assert limits_of(run) == (Decimal("2"), 5000)


def test_an_explicit_token_limit_keeps_the_default_usd_limit(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25", tokens=5000)

    run = run_create(version=flow.version, loaded=flow.loaded, input=1,
                     limits=UsageLimits(total_tokens_limit=100))

    assert limits_of(run) == (Decimal("0.25"), 100)


def test_a_changed_default_applies_to_new_runs_only(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25")
    before = flow.create(1)

    set_defaults(flow, usd="0.50")
    after = flow.create(1)

    assert limits_of(before) == (Decimal("0.25"), None)
    assert limits_of(after) == (Decimal("0.50"), None)


def test_a_scripts_usage_limits_apply_below_the_workflows_defaults(make_flow):
    flow = make_flow("""
        from flowops import UsageLimits, step

        usage_limits = UsageLimits(total_cost_usd_limit=0.1, total_tokens_limit=700)

        @step
        def work(x: int) -> int:
            return x + 1

        pipeline = work
    """)

    from_script = flow.create(1)
    set_defaults(flow, tokens=5000)
    default_over_script = flow.create(1)
    explicit = run_create(version=flow.version, loaded=flow.loaded, input=1,
                          limits=UsageLimits(total_cost_usd_limit=Decimal("3")))

    assert limits_of(from_script) == (Decimal("0.1"), 700)
    assert limits_of(default_over_script) == (Decimal("0.1"), 5000)
    assert limits_of(explicit) == (Decimal("3"), 5000)


def test_a_script_whose_usage_limits_is_not_usage_limits_is_refused(write_script):
    path = write_script("""
        from flowops import step

        usage_limits = {"total_cost_usd_limit": 1}

        @step
        def work(x: int) -> int:
            return x + 1

        pipeline = work
    """, name="bad_limits.py")

    with pytest.raises(ScriptError, match="`usage_limits` is a dict, not UsageLimits"):
        workflow_version_from_path(path)


def test_a_run_halts_at_its_workflows_default_token_limit(make_flow, openai_env):
    # given a default of 100 tokens; each call's worst case is 59 tokens, and `ask` uses 50:
    # room for `ask` (0 + 59), not for `again` (50 + 59)
    openai_env.reply("hi", prompt_tokens=40, completion_tokens=10)
    flow = make_flow(ASK)
    set_defaults(flow, tokens=100)

    run = flow.run("hello")

    # then `ask` was paid for, and `again` was never sent
    budget = RunBudget.objects.get(run=run)
    assert run.status == Run.Status.HALTED
    assert (run.error["type"], run.error["step_key"]) == ("BudgetExceeded", "again")
    assert run.error["limit_tokens"] == 100
    assert (budget.spent_tokens, budget.reserved_tokens) == (50, 0)
    assert len(openai_env.requests) == 1
    assert openai_env.stats().billed_tokens == 50


def test_a_run_halts_at_its_workflows_default_usd_limit_before_sending(make_flow, openai_env):
    # given a default below one call's worst case (the 50-token cap alone is $0.00003)
    flow = make_flow(ASK)
    set_defaults(flow, usd="0.00001")

    run = flow.run("hello")

    assert run.status == Run.Status.HALTED
    assert (run.error["step_key"], run.error["limit_usd"]) == ("ask", "0.00001000")
    assert openai_env.requests == []


def test_lens_json_and_text_show_the_default_limits(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25", tokens=5000)
    run = flow.run(1)
    as_json, as_text = io.StringIO(), io.StringIO()

    call_command("lens", run.id, "--json", stdout=as_json)
    call_command("lens", run.id, stdout=as_text)

    assert json.loads(as_json.getvalue())["spend"] == {
        "usd": 0.0, "tokens": 0, "limit_usd": 0.25, "limit_tokens": 5000}
    assert "limit $0.250000 and 5000 tokens" in as_text.getvalue()


def test_runflow_budget_usd_keeps_the_default_token_limit(make_flow):
    flow = make_flow(WORK)
    set_defaults(flow, usd="0.25", tokens=5000)
    out = io.StringIO()

    call_command("runflow", str(flow.path), "--input-json", "1", "--budget-usd", "0.5",
                 "--json", stdout=out)

    document = json.loads(out.getvalue())
    assert document["status"] == "succeeded"
    assert document["spend"]["limit_usd"] == 0.5
    assert document["spend"]["limit_tokens"] == 5000
    assert Run.objects.get(pk=document["run_id"]).version_id == flow.version.id


@pytest.mark.parametrize("option, value, problem", [
    ("--budget-usd", "1000000", "--budget-usd: Input should be less than 1000000"),
    ("--budget-usd", "-1", "--budget-usd: Input should be greater than or equal to 0"),
    ("--budget-tokens", str(2**63), "--budget-tokens: Input should be less than or equal to"),
])
def test_runflow_refuses_a_budget_the_ledger_cannot_hold_naming_the_option(
        make_flow, option, value, problem):
    from django.core.management.base import CommandError

    flow = make_flow(WORK)

    with pytest.raises(CommandError) as refused:
        call_command("runflow", str(flow.path), "--input-json", "1", option, value)

    assert problem in str(refused.value)
    assert not Run.objects.exists()
