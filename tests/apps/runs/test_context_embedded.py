"""The typed PipelineContext: validated at creation, changed by steps, checkpointed."""

from __future__ import annotations

import pytest

from apps.runs.models import Run, StepRun
from flowops import InputValidationError
from tests.apps.runs.conftest import EMBEDDED, statuses, steps_of

pytestmark = EMBEDDED

SCRIPT = '''
from flowops import PipelineContext, step


class Research(PipelineContext):
    topic: str = ""
    notes: list[str] = []
    rounds: int = 0


context_model = Research


@step
def take_notes(text: str, context: Research) -> int:
    context.notes = context.notes + [f"{context.topic}: {text}"]
    context.rounds += 1
    return len(text)


@step
def summarise(length: int, context: Research) -> str:
    context.rounds += 1
    return f"{len(context.notes)} note(s) on {context.topic}, {length} chars"


@step
def ignores_context(summary: str) -> str:
    return summary.upper()
'''


def test_context_changes_are_checkpointed_with_each_step(make_flow):
    flow = make_flow(SCRIPT, "pipeline = take_notes >> summarise >> ignores_context")

    run = flow.run("llamas", context={"topic": "camelids"})

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == "1 NOTE(S) ON CAMELIDS, 6 CHARS"
    assert run.initial_context == {"topic": "camelids", "notes": [], "rounds": 0,
                                   "initial_prompt": "llamas", "scratchpad": {}}
    rows = steps_of(run)
    assert rows["take_notes"].context == {"topic": "camelids", "notes": ["camelids: llamas"],
                                          "rounds": 1, "initial_prompt": "llamas",
                                          "scratchpad": {}}
    assert rows["summarise"].context["rounds"] == 2
    # A step without a context parameter passes the context on unchanged.
    assert rows["ignores_context"].context == rows["summarise"].context


def test_initial_prompt_is_the_text_input(make_flow):
    flow = make_flow(SCRIPT, "pipeline = take_notes")

    run = flow.run("hello")

    assert run.initial_context["initial_prompt"] == "hello"


def test_context_that_does_not_fit_the_model_is_refused_before_anything_runs(make_flow):
    flow = make_flow(SCRIPT, "pipeline = take_notes")

    with pytest.raises(InputValidationError) as caught:
        flow.create("x", context={"rounds": "many"})

    assert str(caught.value) == ("context does not fit Research: rounds: Input should be a "
                                 "valid integer, unable to parse string as an integer")
    assert Run.objects.count() == 0
    assert StepRun.objects.count() == 0


def test_unknown_context_fields_are_refused(make_flow):
    flow = make_flow(SCRIPT, "pipeline = take_notes")

    with pytest.raises(InputValidationError, match=r"^context does not fit Research: "
                                                   r"colour: Extra inputs are not permitted$"):
        flow.create("x", context={"colour": "red"})

    assert Run.objects.count() == 0


def test_an_invalid_assignment_fails_the_step_and_keeps_the_previous_checkpoint(make_flow):
    flow = make_flow(SCRIPT, '''
    @step
    def corrupt(length: int, context: Research) -> int:
        context.rounds = "lots"
        return length

    pipeline = take_notes >> corrupt >> summarise
    ''')

    run = flow.run("abc", context={"topic": "t"})

    assert run.status == Run.Status.FAILED
    assert run.error["step_key"] == "corrupt"
    assert run.error["type"] == "ValidationError"
    assert "rounds" in run.error["message"]
    rows = steps_of(run)
    assert rows["corrupt"].context is None
    assert rows["corrupt"].output is None
    assert rows["take_notes"].context["rounds"] == 1
    assert statuses(run) == {"take_notes": "succeeded", "corrupt": "failed",
                             "summarise": "pending"}


def test_without_a_context_model_steps_get_the_base_pipeline_context(make_flow):
    flow = make_flow('''
    from flowops import PipelineContext, step

    @step
    def note(text: str, context: PipelineContext) -> str:
        context.scratchpad = {"seen": text, "type": type(context).__name__}
        return text

    pipeline = note
    ''')

    run = flow.run("hi")

    assert run.status == Run.Status.SUCCEEDED
    assert steps_of(run)["note"].context == {
        "initial_prompt": "hi", "scratchpad": {"seen": "hi", "type": "PipelineContext"}}
