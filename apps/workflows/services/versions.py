"""Workflow versions: pinning a script's source and loading it back (CONTRACTS.md §4).

A run executes the exact source it was created with, loaded by its sha256 and cached per
process, never "whatever the file says now". The Flujo runner registers the live objects
of the calling script under the same key, so in-process runs use them directly.
"""

from __future__ import annotations

import hashlib
import linecache
import re
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction

from apps.workflows.models import Workflow, WorkflowVersion
from apps.workflows.services.scripts import script_pipeline
from flowops._plan import Plan
from flowops._steps import Pipeline, Step
from flowops.exceptions import PipelineDefinitionError, ScriptError
from flowops.triggers import TriggerSpec, triggers_of
from flowops.usage import UsageLimits

_SLUG = re.compile(r"[^a-z0-9_-]+")


@dataclass
class LoadedWorkflow:
    """A version's module, pipeline and compiled plan."""

    sha256: str
    entry: str
    pipeline: Pipeline
    plan: Plan
    context_model: type | None
    module: types.ModuleType | None
    usage_limits: UsageLimits | None = None
    """The script's module-level ``usage_limits``: the lowest layer of a new run's limits."""
    triggers: list[TriggerSpec] = field(default_factory=list)

    @property
    def is_script(self) -> bool:
        """FlowOps style (``def run(context)``) rather than a pipeline."""
        return self.entry == "run"


_loaded: dict[tuple[str, str], LoadedWorkflow] = {}
_lock = threading.Lock()


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def read_script(path: str | Path) -> tuple[Path, str]:
    script = Path(path).expanduser()
    try:
        return script.resolve(), script.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScriptError("no such file", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read: {exc}", path=str(path)) from None


def load_source(source: str, *, origin: str, entry: str = "pipeline") -> LoadedWorkflow:
    """Execute a script's source as a fresh module and find its pipeline (cached by hash)."""
    sha = source_sha256(source)
    with _lock:
        cached = _loaded.get((sha, entry))
    if cached is not None:
        return cached
    module = _exec_module(source, sha=sha, origin=origin)
    loaded = _loaded_from_module(module, sha=sha, entry=entry, origin=origin)
    with _lock:
        # Also under the entry found ("run" for a script asked for as "pipeline"), so the
        # version's own entry finds this module rather than executing the source again.
        _loaded.setdefault((sha, loaded.entry), loaded)
        return _loaded.setdefault((sha, entry), loaded)


def load_version(version: WorkflowVersion) -> LoadedWorkflow:
    return load_source(version.source, origin=version.origin_path or str(version),
                       entry=version.entry)


def register_live(*, source: str, entry: str, pipeline: Pipeline,
                  context_model: type | None) -> LoadedWorkflow:
    """Use objects already in memory (the Flujo runner's caller) for this source hash."""
    sha = source_sha256(source)
    loaded = LoadedWorkflow(sha256=sha, entry=entry, pipeline=pipeline, plan=Plan(pipeline),
                            context_model=context_model, module=None)
    with _lock:
        _loaded[(sha, entry)] = loaded
    return loaded


def _exec_module(source: str, *, sha: str, origin: str) -> types.ModuleType:
    filename = origin or f"<flowops:{sha[:12]}>"
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise ScriptError(f"syntax error: {exc.msg}", path=origin, line=exc.lineno) from None
    # Keep the source reachable for tracebacks and inspect.getsource (Step.cached hashes it).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"flowops_workflow_{sha[:16]}")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        sys.modules.pop(module.__name__, None)
        line = _script_line(exc, filename)
        raise ScriptError(f"{type(exc).__name__}: {exc}", path=origin, line=line) from exc
    return module


def _script_line(exc: BaseException, filename: str) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return frames[-1].lineno if frames else None


def _loaded_from_module(module: types.ModuleType, *, sha: str, entry: str,
                        origin: str) -> LoadedWorkflow:
    _check_trigger_targets(module, origin)
    has_pipeline = getattr(module, "pipeline", None) is not None
    run = getattr(module, "run", None)
    if entry == "run" or (entry == "pipeline" and callable(run)
                          and (not has_pipeline or triggers_of(run))):
        return _loaded_script(module, sha=sha, origin=origin, has_pipeline=has_pipeline)
    pipeline = getattr(module, entry, None)
    if pipeline is None:
        raise ScriptError(f"no module-level `{entry}` (a Step or Pipeline) nor a "
                          "`def run(context)` to run", path=origin)
    if not isinstance(pipeline, Step | Pipeline):
        raise ScriptError(f"`{entry}` is a {type(pipeline).__name__}, not a Step or Pipeline",
                          path=origin)
    try:
        plan = Plan(pipeline)
    except PipelineDefinitionError as exc:
        raise ScriptError(str(exc), path=origin) from exc
    context_model = getattr(module, "context_model", None)
    return LoadedWorkflow(sha256=sha, entry=entry, pipeline=Pipeline.of(pipeline), plan=plan,
                          context_model=context_model, module=module,
                          usage_limits=_usage_limits(module, origin))


def _usage_limits(module: types.ModuleType, origin: str) -> UsageLimits | None:
    usage_limits = getattr(module, "usage_limits", None)
    if usage_limits is not None and not isinstance(usage_limits, UsageLimits):
        raise ScriptError(f"`usage_limits` is a {type(usage_limits).__name__}, not "
                          "UsageLimits (from flowops import UsageLimits)", path=origin)
    return usage_limits


def _check_trigger_targets(module: types.ModuleType, origin: str) -> None:
    for name, value in vars(module).items():
        specs = triggers_of(value)
        if specs and name != "run":
            raise ScriptError(f"@trigger is on `{name}`; triggers go on `def run(context)`",
                              path=origin, line=specs[0].line)


def _loaded_script(module: types.ModuleType, *, sha: str, origin: str,
                   has_pipeline: bool) -> LoadedWorkflow:
    """A FlowOps-style script: ``run(context)`` runs as the one step ``run`` of its plan."""
    if has_pipeline:
        raise ScriptError("defines both `pipeline` and `run`; keep one of them", path=origin)
    pipeline = script_pipeline(module.run)
    return LoadedWorkflow(sha256=sha, entry="run", pipeline=pipeline, plan=Plan(pipeline),
                          context_model=None, module=module,
                          usage_limits=_usage_limits(module, origin),
                          triggers=triggers_of(module.run))


def slug_for(path: Path, module: Any = None) -> str:
    name = getattr(module, "name", None) if module is not None else None
    raw = name if isinstance(name, str) and name else path.stem
    return _SLUG.sub("-", raw.lower()).strip("-") or "workflow"


def workflow_version_get_or_create(*, source: str, origin_path: str, slug: str,
                                   entry: str = "pipeline") -> WorkflowVersion:
    """The version row for this exact source, creating the workflow and version if new."""
    sha = source_sha256(source)
    for _ in range(2):  # a concurrent creator may win the race once
        try:
            with transaction.atomic():
                workflow, _ = Workflow.objects.get_or_create(slug=slug, defaults={"name": slug})
                version, _ = WorkflowVersion.objects.get_or_create(
                    workflow=workflow, sha256=sha, entry=entry,
                    defaults={"source": source, "origin_path": origin_path},
                )
                return version
        except IntegrityError:
            continue
    return WorkflowVersion.objects.get(workflow__slug=slug, sha256=sha, entry=entry)


def workflow_version_from_path(path: str | Path, *, entry: str = "pipeline"
                               ) -> tuple[WorkflowVersion, LoadedWorkflow]:
    """Load a script, check it, and pin its source as a version."""
    resolved, source = read_script(path)
    loaded = load_source(source, origin=str(resolved), entry=entry)
    version = workflow_version_get_or_create(
        source=source, origin_path=str(resolved), slug=slug_for(resolved, loaded.module),
        entry=loaded.entry)
    return version, loaded
