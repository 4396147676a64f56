"""FlowOps-style scripts: ``def run(context)`` as the one step ``run`` of a plan.

A script run is a run of a one-node plan, so it is claimed, fenced, checkpointed and
recovered like any step, and its SDK calls are journaled under the step key ``run``
(CONTRACTS.md §7: ``run/<seq>:<call>``). After a crash or a retry the script runs again
from the top; journaled calls return what they returned the first time.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from apps.workflows.services.config import ENV_KEY
from flowops._runtime import current_journal
from flowops._steps import Pipeline, step
from flowops.context import Context, Message, TriggerInfo
from flowops.exceptions import UserError


class ConfigError(UserError):
    """A workflow setting names an environment variable the worker does not have."""


def script_pipeline(run_fn: Callable[..., Any]) -> Pipeline:
    if inspect.iscoroutinefunction(run_fn):
        async def run(event: dict[str, Any]) -> Any:
            from apps.runs.services.journal import _adb

            return await run_fn(await _adb(script_context, event))
    else:
        def run(event: dict[str, Any]) -> Any:
            from apps.runs.services.journal import orm_call

            return run_fn(orm_call(script_context, event))
    return Pipeline.of(step(name="run")(run))


def script_context(event: dict[str, Any]) -> Context:
    """The ``context`` of this attempt: the stored event plus the workflow's settings now."""
    from apps.runs.models import Run

    journal = current_journal()
    run_id = getattr(journal, "run_id", "")
    workflow_id, slug, config = Run.objects.filter(pk=run_id).values_list(
        "version__workflow_id", "version__workflow__slug", "version__workflow__config",
    ).first() or (None, None, {})
    trigger = event.get("trigger") or {}
    return Context(
        workflow_id=workflow_id, workflow=slug, run_id=run_id,
        trigger=TriggerInfo(integration=trigger.get("integration", "manual"),
                            event=trigger.get("event"), id=trigger.get("id"),
                            scheduled_for=trigger.get("scheduled_for")),
        message=Message.from_dict(event.get("message")),
        payload=event.get("payload"),
        config=resolve_config(config or {}),
    )


def resolve_config(config: dict[str, Any], *, path: str = "config") -> dict[str, Any]:
    """Replace each ``{"$env": "NAME"}`` with the environment variable's value."""
    return {key: _resolve(value, f"{path}.{key}") for key, value in config.items()}


def _resolve(value: Any, where: str) -> Any:
    # Wherever config_validate lets a reference stand (nested objects and arrays).
    if isinstance(value, dict) and set(value) == {ENV_KEY}:
        name = value[ENV_KEY]
        if name not in os.environ:
            raise ConfigError(f"{where}: the environment variable {name} is not set on "
                              "this worker")
        return os.environ[name]
    if isinstance(value, dict):
        return resolve_config(value, path=where)
    if isinstance(value, list):
        return [_resolve(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value
