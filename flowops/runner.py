"""The seed's runner API: ``Flujo(pipeline, ...).run(...)`` on the FlowOps engine.

Runs made here are ordinary FlowOps runs: pinned to a version of the calling script's
source, checkpointed step by step, visible to ``lens`` and the admin, resumable by
``run_id``. In the embedded default they execute in this process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

from flowops._codec import decode
from flowops._django import ensure_django
from flowops._steps import Pipeline, Step
from flowops.domain.models import PipelineContext, PipelineResult, StepResult
from flowops.exceptions import (
    RunCancelled,
    RunHalted,
    StepFailed,
    UserError,
)
from flowops.state import SQLiteBackend
from flowops.usage import UsageLimits


class Flujo:
    """Run a pipeline durably.

    ::

        runner = Flujo(pipeline, context_model=MarketCtx,
                       state_backend=SQLiteBackend(Path("reports.db")))
        result = runner.run("input", run_id="q3-analysis-2025")
        print(result.step_history[-1].output)
    """

    def __init__(self, pipeline: Step | Pipeline, *,
                 context_model: type[PipelineContext] | None = None,
                 state_backend: SQLiteBackend | None = None,
                 usage_limits: UsageLimits | None = None,
                 name: str | None = None):
        self.pipeline = Pipeline.of(pipeline)
        self._original = pipeline
        self.context_model = context_model
        self.state_backend = state_backend
        self.usage_limits = usage_limits
        self.name = name

    # -- public ----------------------------------------------------------------------
    def run(self, initial_input: Any = None, *, initial_context_data: dict | None = None,
            run_id: str | None = None) -> PipelineResult:
        """Run (or resume, or fetch, by ``run_id``) and return the result."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._run(initial_input, initial_context_data, run_id)
        # Called from inside an event loop: keep the loop free, run in a thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(self._run, initial_input, initial_context_data, run_id).result()

    def run_async(self, initial_input: Any = None, *, initial_context_data: dict | None = None,
                  run_id: str | None = None) -> _AsyncRun:
        """Awaitable, and async-iterable (yielding the final result) like the seed uses it."""
        return _AsyncRun(self, initial_input, initial_context_data, run_id)

    # -- internals -------------------------------------------------------------------
    def _run(self, data: Any, context_data: dict | None, run_id: str | None) -> PipelineResult:
        ensure_django(self.state_backend.path if self.state_backend else None)
        from django.db import connection

        try:
            run = self._start_or_resume(data, context_data, run_id)
            return self._result(run)
        finally:
            if not _is_main_thread():
                connection.close()

    def _start_or_resume(self, data: Any, context_data: dict | None, run_id: str | None):
        from apps.core.exceptions import ApplicationError
        from apps.runs.cli import wait_for
        from apps.runs.models import Run
        from apps.runs.services import runs as run_services
        from apps.workflows.services import register_live, workflow_version_get_or_create

        source, origin, entry = self._source()
        loaded = register_live(source=source, entry=entry, pipeline=self.pipeline,
                               context_model=self.context_model)
        version = workflow_version_get_or_create(
            source=source, origin_path=origin, slug=self._slug(origin), entry=entry)
        run = Run.objects.filter(pk=run_id).first() if run_id else None
        if run is not None and run.version_id != version.id:
            raise UserError(f"run {run_id} belongs to {run.version}, not to this pipeline "
                            f"({version}); use another run_id")
        if run is None:
            run = run_services.run_create(version=version, loaded=loaded, input=data,
                                          context_data=context_data, run_id=run_id,
                                          limits=self.usage_limits,
                                          driver="embedded" if entry.startswith("<") else None)
            run_services.run_start(run)
        elif run.status in (Run.Status.FAILED, Run.Status.HALTED, Run.Status.RUNNING):
            try:
                run_services.run_resume(run_id=run.id)
            except ApplicationError as exc:
                raise UserError(exc.message) from None
        run.refresh_from_db()
        if run.driver == "celery" or run.waiting_on:
            run = wait_for(run.id)
        return run

    def _source(self) -> tuple[str, str, str]:
        """The calling script's source, where it lives, and the name that holds the pipeline."""
        module = _defining_module(self.pipeline)
        path = getattr(module, "__file__", None) if module else None
        if path and Path(path).is_file():
            source = Path(path).read_text(encoding="utf-8")
            entry = next((name for name, value in vars(module).items()
                          if value is self._original), None)
            return source, str(Path(path).resolve()), entry or f"<memory:{self._label()}>"
        return f"# pipeline built in memory: {self._label()}\n", "", f"<memory:{self._label()}>"

    def _label(self) -> str:
        return self.name or "-".join(s.name for s in self.pipeline.steps)[:150]

    def _slug(self, origin: str) -> str:
        from apps.workflows.services import slug_for

        return slug_for(Path(origin or self._label()))

    def _result(self, run) -> PipelineResult:
        from apps.runs.models import Run, StepRun
        from apps.runs.services.execution import loaded_for

        loaded = loaded_for(run)
        rows = {s.key: s for s in StepRun.objects.filter(run=run, key__in=[
            n.name for n in loaded.plan.root.nodes])}
        history = [_step_result(node, rows.get(node.name)) for node in loaded.plan.root.nodes]
        history = [h for h in history if h is not None]
        error = run.error or {}
        if run.status == Run.Status.FAILED:
            raise StepFailed(f"run {run.id} failed in {error.get('step_key')}: "
                             f"{error.get('type')}: {error.get('message')}", run_id=run.id,
                             step_key=error.get("step_key"), error_type=error.get("type"))
        if run.status == Run.Status.HALTED:
            raise RunHalted(f"run {run.id} halted: {error.get('message', '')}", run_id=run.id)
        if run.status == Run.Status.CANCELLED:
            raise RunCancelled(f"run {run.id} was cancelled", run_id=run.id)
        context = _final_context(loaded, run, rows)
        last = loaded.plan.root.nodes[-1]
        output = decode(run.output, last.step.output_annotation()) if run.output is not None \
            else None
        return PipelineResult(run_id=run.id, status=run.status, output=output,
                              step_history=history, final_pipeline_context=context)


class _AsyncRun:
    def __init__(self, runner: Flujo, data: Any, context_data: dict | None, run_id: str | None):
        self._args = (data, context_data, run_id)
        self._runner = runner

    async def _go(self) -> PipelineResult:
        return await asyncio.to_thread(self._runner._run, *self._args)

    def __await__(self) -> Generator[Any, None, PipelineResult]:
        return self._go().__await__()

    async def __aiter__(self) -> AsyncIterator[PipelineResult]:
        yield await self._go()


def _step_result(node, row) -> StepResult | None:
    if row is None:
        return None
    output = row.output
    if node.is_leaf and output is not None and row.status == "succeeded":
        output = decode(output, node.step.output_annotation())
    return StepResult(name=node.name, key=row.key, kind=row.kind, status=row.status,
                      output=output, success=row.status == "succeeded",
                      attempts=row.attempt + row.retries,
                      latency_s=(row.duration_ms or 0) / 1000, cost_usd=float(row.cost_usd),
                      token_counts=row.tokens, cache_hit=row.cache_hit)


def _final_context(loaded, run, rows) -> Any:
    from apps.runs.services.execution import context_model_of

    last = rows.get(loaded.plan.root.nodes[-1].name)
    data = last.context if last is not None and last.context is not None else run.initial_context
    return context_model_of(loaded).model_validate(data or {})


def _defining_module(pipeline: Pipeline) -> Any:
    for item in _leaves(pipeline):
        fn = item.func or getattr(item.agent, "run", None)
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        if module is not None and not getattr(module, "__name__", "").startswith("flowops"):
            return module
    frame = inspect.currentframe()
    while frame is not None:  # fall back to the first caller outside flowops
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("flowops") and not name.startswith("asyncio") \
                and not name.startswith("concurrent"):
            return sys.modules.get(name)
        frame = frame.f_back
    return None


def _leaves(pipeline: Pipeline):
    for item in pipeline.steps:
        if item.is_leaf:
            yield item
        for child in (getattr(item, "branches", None) or {}).values():
            yield from _leaves(child)
        for attr in ("body", "default"):
            child = getattr(item, attr, None)
            if isinstance(child, Pipeline):
                yield from _leaves(child)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
