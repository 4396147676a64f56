"""The step algebra in plain Python: ``@step``, ``>>``, combinators and their checks."""

import re
from typing import Any

import pytest
from pydantic import BaseModel

from flowops import Pipeline, PipelineDefinitionError, Step, StepConfig, step
from flowops._steps import (
    DEFAULT_BRANCH,
    BranchStep,
    CachedStep,
    HumanStep,
    LoopStep,
    MapStep,
    ParallelStep,
)


@step
def parse(text: str) -> int:
    return int(text)


@step
def double(x: int) -> int:
    return x * 2


@step
async def fetch(url: str) -> bytes:
    return url.encode()


@step
def with_context(x: int, context: Any) -> int:
    return x


@step
def no_input() -> str:
    return "constant"


class EchoAgent:
    input_type = str
    output_type = str

    async def run(self, data: str) -> str:
        return data


class SyncAgent:
    def run(self, data):
        return data


class Review(BaseModel):
    approved: bool


def is_big(data: Any, context: Any) -> str:
    return "big" if data > 10 else "small"


def over_three(output: int, context: Any) -> bool:
    return output > 3


# -- @step -------------------------------------------------------------------------------
def test_step_decorator_wraps_a_sync_function():
    assert isinstance(parse, Step)
    assert parse.name == "parse"
    assert parse.kind == "step"
    assert parse.is_leaf is True
    assert parse.is_async is False
    assert parse.takes_context is False
    assert parse.input_annotation() is str
    assert parse.output_annotation() is int
    assert parse.func("12") == 12
    assert parse.config == StepConfig(max_retries=0, retry_backoff_s=1.0, timeout_s=None)


def test_step_decorator_wraps_an_async_function():
    assert fetch.name == "fetch"
    assert fetch.is_async is True
    assert fetch.input_annotation() is str
    assert fetch.output_annotation() is bytes


def test_step_decorator_takes_name_retries_and_timeout():
    @step(name="Fetch-Page", max_retries=3, timeout_s=2.5, retry_backoff_s=0.25)
    def fetch_page(url: str) -> str:
        return url

    assert fetch_page.name == "Fetch-Page"
    assert fetch_page.config == StepConfig(max_retries=3, retry_backoff_s=0.25, timeout_s=2.5)


def test_context_parameter_is_not_the_input():
    assert with_context.takes_context is True
    assert with_context.input_annotation() is int


def test_a_step_without_parameters_takes_none():
    assert no_input.input_annotation() is type(None)


def test_unannotated_step_takes_and_returns_any():
    @step
    def loose(x):
        return x

    assert loose.input_annotation() is Any
    assert loose.output_annotation() is Any


def test_retries_are_off_by_default():
    assert double.config.max_retries == 0


@pytest.mark.parametrize("config", [{"max_retries": -1}, {"timeout_s": 0},
                                    {"retry_backoff_s": -0.5}])
def test_bad_step_config_is_refused(config):
    with pytest.raises(PipelineDefinitionError, match=next(iter(config))):
        step(**config)(lambda x: x)


# -- agent steps -------------------------------------------------------------------------
def test_model_validate_builds_an_agent_step():
    agent = EchoAgent()

    made = Step.model_validate({"name": "Summarise", "agent": agent})

    assert made.name == "Summarise"
    assert made.agent is agent
    assert made.func is None
    assert made.is_async is True
    assert made.is_leaf is True
    assert made.input_annotation() is str
    assert made.output_annotation() is str


def test_agent_without_declared_types_takes_any():
    made = Step.model_validate({"name": "Plain", "agent": SyncAgent()})

    assert made.is_async is False
    assert made.input_annotation() is Any
    assert made.output_annotation() is Any


def test_model_validate_refuses_unknown_fields():
    with pytest.raises(PipelineDefinitionError, match="agnet: Extra inputs"):
        Step.model_validate({"name": "X", "agent": SyncAgent(), "agnet": 1})


# -- names -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a/b", "a@b", "a[b", "a]b", "a#2", ""])
def test_bad_step_names_are_refused(name):
    with pytest.raises(PipelineDefinitionError,
                       match=r"step name .* is empty or uses one of #/@\[\]"):
        Step.model_validate({"name": name, "agent": SyncAgent()})


@pytest.mark.parametrize("name", ["x/y", "x@y", "x[0]"])
def test_bad_names_are_refused_by_the_decorator(name):
    with pytest.raises(PipelineDefinitionError):
        step(name=name)(lambda x: x)


@pytest.mark.parametrize("name", ["fan/out", "@x", "b[1]", ""])
def test_bad_parallel_branch_names_are_refused(name):
    with pytest.raises(PipelineDefinitionError, match="bad branch name"):
        Step.parallel("fan", {name: double})


@pytest.mark.parametrize("key", ["a/b", "k@", DEFAULT_BRANCH])
def test_bad_branch_keys_are_refused(key):
    with pytest.raises(PipelineDefinitionError, match="bad branch key"):
        Step.branch_on("sign", is_big, {key: double})


def test_combinator_names_are_checked_too():
    with pytest.raises(PipelineDefinitionError):
        Step.map_over("each/item", double)


# -- >> ----------------------------------------------------------------------------------
def test_rshift_makes_a_flat_pipeline():
    pipeline = parse >> double >> double

    assert isinstance(pipeline, Pipeline)
    assert [s.name for s in pipeline.steps] == ["parse", "double", "double"]


def test_rshift_flattens_nested_pipelines():
    left = parse >> double
    right = double >> fetch

    assert [s.name for s in (left >> right).steps] == ["parse", "double", "double", "fetch"]
    assert [s.name for s in (parse >> right).steps] == ["parse", "double", "fetch"]
    assert [s.name for s in (left >> fetch).steps] == ["parse", "double", "fetch"]


def test_rshift_does_not_change_its_operands():
    left = parse >> double

    left >> fetch

    assert [s.name for s in left.steps] == ["parse", "double"]


def test_rshift_refuses_what_is_not_a_step():
    with pytest.raises(PipelineDefinitionError, match="expected a Step or Pipeline, got int"):
        parse >> 3


def test_pipeline_of_wraps_a_step_and_keeps_a_pipeline():
    pipeline = parse >> double

    assert Pipeline.of(pipeline) is pipeline
    assert Pipeline.of(parse).steps == [parse]


# -- combinators -------------------------------------------------------------------------
def test_parallel_wraps_branches_in_pipelines():
    fan = Step.parallel("fan", {"d": double, "two": double >> double}, max_concurrency=2)

    assert isinstance(fan, ParallelStep)
    assert fan.kind == "parallel"
    assert fan.is_leaf is False
    assert fan.max_concurrency == 2
    assert {k: [s.name for s in p.steps] for k, p in fan.branches.items()} == {
        "d": ["double"], "two": ["double", "double"]}


def test_parallel_keeps_branch_order():
    fan = Step.parallel("fan", branches={"z": double, "a": parse, "m": fetch})

    assert list(fan.branches) == ["z", "a", "m"]


def test_parallel_without_branches_is_refused():
    with pytest.raises(PipelineDefinitionError, match="parallel 'fan' needs at least one branch"):
        Step.parallel("fan", {})


def test_map_over_accepts_the_flujo_keywords():
    each = Step.map_over("each", pipeline_to_run=double >> double, iterable_input="items",
                         max_concurrency=3, on_item_failure="none")

    assert isinstance(each, MapStep)
    assert [s.name for s in each.body.steps] == ["double", "double"]
    assert (each.iterable_input, each.max_concurrency, each.on_item_failure) == (
        "items", 3, "none")


def test_map_over_takes_a_chunk_size():
    each = Step.map_over("each", double, chunk_size=8)

    assert (each.chunk_size, Step.map_over("each", double).chunk_size) == (8, None)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True])
def test_map_over_refuses_a_chunk_size_that_is_not_a_positive_int(bad):
    with pytest.raises(PipelineDefinitionError,
                       match=rf"map_over 'each': chunk_size must be a positive int, "
                             rf"got {re.escape(repr(bad))}"):
        Step.map_over("each", double, chunk_size=bad)


def test_map_over_accepts_body():
    each = Step.map_over("each", body=double)

    assert [s.name for s in each.body.steps] == ["double"]
    assert (each.iterable_input, each.on_item_failure) == (None, "fail")


def test_map_over_without_a_body_is_refused():
    with pytest.raises(PipelineDefinitionError, match="map_over 'each' needs a pipeline to run"):
        Step.map_over("each", iterable_input="items")


def test_branch_on_accepts_the_flujo_keywords():
    sign = Step.branch_on(name="sign", condition_callable=is_big,
                          branches={"big": double, "small": parse},
                          default_branch_pipeline=fetch)

    assert isinstance(sign, BranchStep)
    assert sign._condition is is_big
    assert list(sign.branches) == ["big", "small"]
    assert [s.name for s in sign.default.steps] == ["fetch"]


def test_branch_on_accepts_condition_and_default():
    sign = Step.branch_on("sign", condition=is_big, branches={"big": double}, default=parse)

    assert sign._condition is is_big
    assert [s.name for s in sign.default.steps] == ["parse"]


def test_branch_on_makes_keys_strings():
    sign = Step.branch_on("sign", is_big, {1: double, 2.5: parse})

    assert list(sign.branches) == ["1", "2.5"]
    assert sign.default is None


@pytest.mark.parametrize("kwargs", [{"branches": {"big": double}}, {"condition": is_big},
                                    {"condition": is_big, "branches": {}}])
def test_branch_on_without_condition_or_branches_is_refused(kwargs):
    with pytest.raises(PipelineDefinitionError,
                       match="branch_on 'sign' needs a condition and branches"):
        Step.branch_on("sign", **kwargs)


def test_loop_until_accepts_the_flujo_keywords():
    def mapper(output, context, iteration):
        return output

    grow = Step.loop_until(name="grow", loop_body_pipeline=double,
                           exit_condition_callable=over_three, max_loops=7,
                           iteration_input_mapper=mapper)

    assert isinstance(grow, LoopStep)
    assert grow.max_loops == 7
    assert grow._exit_condition is over_three
    assert grow._iteration_input_mapper is mapper
    assert [s.name for s in grow.body.steps] == ["double"]


def test_loop_until_defaults_to_five_loops():
    grow = Step.loop_until("grow", body=double, exit_condition=over_three)

    assert grow.max_loops == 5
    assert grow._iteration_input_mapper is None


@pytest.mark.parametrize("kwargs", [{"body": double}, {"exit_condition": over_three}])
def test_loop_until_without_body_or_exit_test_is_refused(kwargs):
    with pytest.raises(PipelineDefinitionError,
                       match="loop_until 'grow' needs a body and an exit test"):
        Step.loop_until("grow", **kwargs)


def test_human_in_the_loop_accepts_the_flujo_keywords():
    review = Step.human_in_the_loop("review", message_for_user="Check it", input_schema=Review)

    assert isinstance(review, HumanStep)
    assert review.kind == "hitl"
    assert review.message == "Check it"
    assert review.output_annotation() is Review


def test_human_in_the_loop_without_schema_returns_any():
    review = Step.human_in_the_loop("review", message="Look")

    assert review.message == "Look"
    assert review.output_annotation() is Any


def test_cached_keeps_the_wrapped_function_and_config():
    @step(max_retries=2)
    def square(x: int) -> int:
        return x * x

    cached = Step.cached(square, ttl_s=30)

    assert isinstance(cached, CachedStep)
    assert cached.kind == "cached"
    assert cached.name == "square"
    assert cached.ttl_s == 30
    assert cached.config.max_retries == 2
    assert cached.func(3) == 9
    assert cached.output_annotation() is int


@pytest.mark.parametrize("wrapped", [parse >> double, Step.parallel("fan", {"d": double})])
def test_cached_wraps_only_a_single_step(wrapped):
    with pytest.raises(PipelineDefinitionError,
                       match="Step.cached wraps a single function or agent step"):
        Step.cached(wrapped)


@pytest.mark.parametrize("build", [
    lambda: Step.map_over("each", double, max_concurrency=0),
    lambda: Step.parallel("fan", {"d": double}, max_concurrency=0),
    lambda: Step.loop_until("grow", double, over_three, max_loops=0),
    lambda: Step.map_over("each", double, on_item_failure="skip"),
])
def test_bad_combinator_arguments_raise_pipeline_definition_error(build):
    with pytest.raises(PipelineDefinitionError):
        build()
