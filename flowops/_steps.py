"""The step algebra: ``@step``, ``>>`` and the combinators of ``Step``.

Steps and pipelines are plain data (pydantic models) that describe work; nothing here
runs anything or touches Django. ``flowops._plan`` turns a pipeline into a plan whose
nodes carry the stable keys that runs are checkpointed by (CONTRACTS.md §3).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from flowops._codec import describe_errors
from flowops.exceptions import PipelineDefinitionError

# Characters that structure a step key; a step name may not contain them.
_KEY_CHARS = set("/[]@#")
# A Slack user id: U (or W, an Enterprise Grid user) then upper-case letters and digits.
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]+")


class _Definition(BaseModel):
    """Reports bad arguments as ``PipelineDefinitionError`` naming the field."""

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise PipelineDefinitionError(_problems(type(self).__name__, data, exc)) from None


def _problems(kind: str, data: dict[str, Any], exc: ValidationError) -> str:
    name = data.get("name")
    where = f"{kind} {name!r}" if name else kind
    return f"{where}: {describe_errors(exc)}"


class StepConfig(_Definition):
    """How one step is run."""

    max_retries: int = Field(default=0, ge=0)
    """Extra attempts after an exception. Off by default: a retry re-runs user side effects."""
    retry_backoff_s: float = Field(default=1.0, ge=0)
    """First backoff; doubles on each retry, with jitter."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Fail the step with ``StepTimeout`` when one attempt runs longer than this."""


class Step(_Definition):
    """One unit of work: a function, an agent, or a combinator of other steps.

    Build one with ``@step``, ``Step.model_validate({"name": ..., "agent": ...})`` or a
    combinator (``Step.parallel`` ...); chain with ``>>``::

        pipeline = fetch >> Step.model_validate({"name": "Summarise", "agent": summariser})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str
    """The node name in step keys; defaults to the function name."""
    agent: Any = None
    """An object with ``run(data)`` (sync or async), such as ``make_agent_async(...)``."""
    config: StepConfig = Field(default_factory=StepConfig)
    """Retries and timeout."""

    _func: Callable[..., Any] | None = PrivateAttr(default=None)

    kind: typing.ClassVar[str] = "step"

    def model_post_init(self, __context: Any) -> None:
        bad = _KEY_CHARS.intersection(self.name)
        if not self.name or bad:
            raise PipelineDefinitionError(
                f"step name {self.name!r} is empty or uses one of {''.join(sorted(_KEY_CHARS))}"
            )

    # -- composition -----------------------------------------------------------------
    def __rshift__(self, other: Step | Pipeline) -> Pipeline:
        return Pipeline.of(self) >> other

    def __rrshift__(self, other: Step | Pipeline) -> Pipeline:
        return Pipeline.of(other) >> self

    # -- calling ---------------------------------------------------------------------
    @property
    def func(self) -> Callable[..., Any] | None:
        return self._func

    @property
    def is_leaf(self) -> bool:
        return True

    @property
    def takes_context(self) -> bool:
        if self._func is None:
            return False
        return "context" in _signature(self._func).parameters

    @property
    def is_async(self) -> bool:
        target = self._func or getattr(self.agent, "run", None)
        return inspect.iscoroutinefunction(target)

    def input_annotation(self) -> Any:
        """The annotation of the first parameter, or ``Any``."""
        if self._func is None:
            return getattr(self.agent, "input_type", Any)
        hints = _type_hints(self._func)
        params = [p for p in _signature(self._func).parameters.values()
                  if p.name != "context"]
        if not params:
            return type(None)
        return hints.get(params[0].name, Any)

    def output_annotation(self) -> Any:
        if self._func is None:
            return getattr(self.agent, "output_type", Any)
        return _type_hints(self._func).get("return", Any)

    # -- combinators -----------------------------------------------------------------
    @staticmethod
    def parallel(name: str, branches: dict[str, Step | Pipeline], *,
                 max_concurrency: int | None = None, **config: Any) -> ParallelStep:
        """Run ``branches`` side by side on copies of the context; output is a dict."""
        return ParallelStep(name=name, branches={k: Pipeline.of(v) for k, v in branches.items()},
                            max_concurrency=max_concurrency, config=StepConfig(**config))

    @staticmethod
    def map_over(name: str, pipeline_to_run: Step | Pipeline | None = None, *,
                 iterable_input: str | None = None, max_concurrency: int | None = None,
                 on_item_failure: Literal["fail", "none"] = "fail",
                 body: Step | Pipeline | None = None,
                 chunk_size: int | None = None) -> MapStep:
        """Run ``pipeline_to_run`` once per item; output is the list of item outputs.

        Items come from the context field ``iterable_input``, else from the step's input.
        On Celery workers, items whose body is one step travel several to a message
        (workers/canvas.py): ``chunk_size`` sets how many (default: from the item count);
        ``chunk_size=1`` sends each item on its own.
        """
        body = body or pipeline_to_run
        if body is None:
            raise PipelineDefinitionError(f"map_over {name!r} needs a pipeline to run")
        if chunk_size is not None and (type(chunk_size) is not int or chunk_size < 1):
            raise PipelineDefinitionError(
                f"map_over {name!r}: chunk_size must be a positive int, got {chunk_size!r}")
        return MapStep(name=name, body=Pipeline.of(body), iterable_input=iterable_input,
                       max_concurrency=max_concurrency, on_item_failure=on_item_failure,
                       chunk_size=chunk_size)

    @staticmethod
    def branch_on(name: str, condition_callable: Callable[..., Any] | None = None,
                  branches: dict[Any, Step | Pipeline] | None = None, *,
                  default_branch_pipeline: Step | Pipeline | None = None,
                  condition: Callable[..., Any] | None = None,
                  default: Step | Pipeline | None = None) -> BranchStep:
        """Choose one of ``branches`` by ``condition_callable(data, context)``."""
        condition = condition or condition_callable
        if condition is None or not branches:
            raise PipelineDefinitionError(f"branch_on {name!r} needs a condition and branches")
        fallback = default or default_branch_pipeline
        step = BranchStep(name=name, branches={str(k): Pipeline.of(v) for k, v in branches.items()},
                          default=Pipeline.of(fallback) if fallback is not None else None)
        step._condition = condition
        return step

    @staticmethod
    def loop_until(name: str, loop_body_pipeline: Step | Pipeline | None = None,
                   exit_condition_callable: Callable[..., bool] | None = None, *,
                   max_loops: int = 5,
                   iteration_input_mapper: Callable[..., Any] | None = None,
                   body: Step | Pipeline | None = None,
                   exit_condition: Callable[..., bool] | None = None) -> LoopStep:
        """Run the body until ``exit_condition_callable(output, context)`` is true.

        Each iteration's output is the next one's input (or what
        ``iteration_input_mapper(output, context, iteration)`` makes of it). Reaching
        ``max_loops`` without exiting fails the loop.
        """
        body = body or loop_body_pipeline
        test = exit_condition or exit_condition_callable
        if body is None or test is None:
            raise PipelineDefinitionError(f"loop_until {name!r} needs a body and an exit test")
        step = LoopStep(name=name, body=Pipeline.of(body), max_loops=max_loops)
        step._exit_condition = test
        step._iteration_input_mapper = iteration_input_mapper
        return step

    @staticmethod
    def human_in_the_loop(name: str, message_for_user: str | None = None,
                          input_schema: type[BaseModel] | None = None, *,
                          message: str | None = None,
                          slack_channel: str | None = None,
                          slack_approvers: list[str] | tuple[str, ...] | None = None,
                          ) -> HumanStep:
        """Pause the run until someone approves it; the approval's input is the output.

        ``slack_channel`` (``"#approvals"`` or a channel id) also posts the message there
        with Approve / Reject buttons when the run pauses; ``slack_approvers`` (Slack user
        ids) limits who may click them (default: anyone in the channel)::

            review = Step.human_in_the_loop("review", message_for_user="Publish it?",
                                            slack_channel="#approvals",
                                            slack_approvers=["U0123ABCD"])
        """
        if slack_channel is not None and (
                not isinstance(slack_channel, str) or not slack_channel.strip("# ")):
            raise PipelineDefinitionError(
                f"human_in_the_loop {name!r}: slack_channel must be a non-empty string such "
                f"as '#approvals' or a channel id, got {slack_channel!r}")
        if slack_approvers is not None:
            _check_slack_approvers(name, slack_approvers, slack_channel)
            slack_approvers = tuple(slack_approvers)
        step = HumanStep(name=name, message=message or message_for_user or "",
                         slack_channel=slack_channel, slack_approvers=slack_approvers)
        step._input_schema = input_schema
        return step

    @staticmethod
    def cached(wrapped: Step, *, ttl_s: float | None = None) -> CachedStep:
        """Reuse the output of an earlier run of ``wrapped`` for the same input (and context)."""
        if not isinstance(wrapped, Step) or not wrapped.is_leaf:
            raise PipelineDefinitionError("Step.cached wraps a single function or agent step")
        step = CachedStep(name=wrapped.name, agent=wrapped.agent, config=wrapped.config,
                          ttl_s=ttl_s)
        step._func = wrapped._func
        return step


class ParallelStep(Step):
    kind: typing.ClassVar[str] = "parallel"
    branches: dict[str, Pipeline]
    max_concurrency: int | None = Field(default=None, ge=1)

    def model_post_init(self, __context: Any) -> None:
        super().model_post_init(__context)
        if not self.branches:
            raise PipelineDefinitionError(f"parallel {self.name!r} needs at least one branch")
        for branch in self.branches:
            if _KEY_CHARS.intersection(branch) or not branch:
                raise PipelineDefinitionError(f"parallel {self.name!r}: bad branch name {branch!r}")

    @property
    def is_leaf(self) -> bool:
        return False


class MapStep(Step):
    kind: typing.ClassVar[str] = "map"
    body: Pipeline
    iterable_input: str | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    on_item_failure: Literal["fail", "none"] = "fail"
    chunk_size: int | None = Field(default=None, ge=1)

    @property
    def is_leaf(self) -> bool:
        return False


class BranchStep(Step):
    kind: typing.ClassVar[str] = "branch"
    branches: dict[str, Pipeline]
    default: Pipeline | None = None
    _condition: Callable[..., Any] | None = PrivateAttr(default=None)

    @property
    def is_leaf(self) -> bool:
        return False

    def model_post_init(self, __context: Any) -> None:
        super().model_post_init(__context)
        for branch in self.branches:
            if _KEY_CHARS.intersection(branch) or not branch or branch == DEFAULT_BRANCH:
                raise PipelineDefinitionError(f"branch_on {self.name!r}: bad branch key {branch!r}")


DEFAULT_BRANCH = "_default"


class LoopStep(Step):
    kind: typing.ClassVar[str] = "loop"
    body: Pipeline
    max_loops: int = Field(default=5, ge=1)
    _exit_condition: Callable[..., bool] | None = PrivateAttr(default=None)
    _iteration_input_mapper: Callable[..., Any] | None = PrivateAttr(default=None)

    @property
    def is_leaf(self) -> bool:
        return False


class HumanStep(Step):
    kind: typing.ClassVar[str] = "hitl"
    message: str = ""
    slack_channel: str | None = None
    """Where the approval request is posted with buttons (apps/integrations/slack/approvals.py)."""
    slack_approvers: tuple[str, ...] | None = None
    """The Slack user ids whose clicks count; None: anyone who can see the channel."""
    _input_schema: type[BaseModel] | None = PrivateAttr(default=None)

    def output_annotation(self) -> Any:
        return self._input_schema or Any


def _check_slack_approvers(name: str, approvers: Any, channel: str | None) -> None:
    where = f"human_in_the_loop {name!r}: slack_approvers"
    if channel is None:
        raise PipelineDefinitionError(
            f"{where} needs slack_channel: the approvers click buttons posted there")
    if not isinstance(approvers, list | tuple) or not approvers:
        raise PipelineDefinitionError(
            f"{where} must be a non-empty list of Slack user ids such as ['U0123ABCD'], "
            f"got {approvers!r}")
    for user_id in approvers:
        if not isinstance(user_id, str) or not _SLACK_USER_ID.fullmatch(user_id):
            raise PipelineDefinitionError(
                f"{where}: {user_id!r} is not a Slack user id (U or W, then upper-case "
                f"letters and digits, such as 'U0123ABCD')")


class CachedStep(Step):
    kind: typing.ClassVar[str] = "cached"
    ttl_s: float | None = Field(default=None, gt=0)


class Pipeline(BaseModel):
    """Steps in sequence. ``a >> b`` makes one; pipelines nest and flatten."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    steps: list[Step]

    @classmethod
    def of(cls, item: Step | Pipeline) -> Pipeline:
        if isinstance(item, Pipeline):
            return item
        if isinstance(item, Step):
            return cls(steps=[item])
        raise PipelineDefinitionError(f"expected a Step or Pipeline, got {type(item).__name__}")

    def __rshift__(self, other: Step | Pipeline) -> Pipeline:
        return Pipeline(steps=[*self.steps, *Pipeline.of(other).steps])

    def __rrshift__(self, other: Step | Pipeline) -> Pipeline:
        return Pipeline.of(other) >> self


def step(func: Callable[..., Any] | None = None, *, name: str | None = None,
         max_retries: int = 0, timeout_s: float | None = None,
         retry_backoff_s: float = 1.0) -> Any:
    """Turn a sync or async function into a ``Step``.

    The first parameter is the step's input; a parameter named ``context`` receives the
    run's typed context. Annotations type the input and output::

        @step
        async def hello(name: str) -> str:
            return f"Hello, {name}!"
    """

    def wrap(fn: Callable[..., Any]) -> Step:
        config = StepConfig(max_retries=max_retries, timeout_s=timeout_s,
                            retry_backoff_s=retry_backoff_s)
        made = Step(name=name or fn.__name__, config=config)
        made._func = fn
        return made

    return wrap(func) if func is not None else wrap


# Both are asked for on every step a worker runs; a function's answer never changes.
@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


@functools.cache
def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a forward reference the module cannot resolve: fall back to Any
        return {}


ParallelStep.model_rebuild()
MapStep.model_rebuild()
BranchStep.model_rebuild()
LoopStep.model_rebuild()
