"""Edits of a workflow's settings (the admin's workflow page; the same rules for any caller).

The workflow's slug, versions and triggers come from its script (registration); only the
settings below are edited by hand.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from apps.core.exceptions import ApplicationError
from apps.workflows.models import Workflow
from apps.workflows.services.config import config_validate

EDITABLE = ("name", "description", "default_budget_usd", "default_budget_tokens", "config")


def workflow_update(*, workflow: Workflow, data: dict[str, Any]) -> Workflow:
    """Set and save the fields in ``data``; nothing is saved if any of them is refused.

    ``config`` must pass ``config_validate`` (no plain-text secrets); the budgets must be
    greater than 0 or None.
    """
    unknown = sorted(set(data) - set(EDITABLE))
    if unknown:
        raise ApplicationError(f"{unknown[0]}: not editable; edit one of {', '.join(EDITABLE)}",
                               {"errors": {field: "not editable" for field in unknown}})
    if "config" in data:
        config_validate(data["config"])
    for field, value in data.items():
        setattr(workflow, field, value)
    try:
        workflow.clean_fields(exclude=[f.name for f in Workflow._meta.fields
                                       if f.name not in data])
    except ValidationError as exc:
        errors = {field: " ".join(messages) for field, messages in exc.message_dict.items()}
        workflow.refresh_from_db(fields=list(data))  # the instance keeps what is stored
        raise ApplicationError("\n".join(f"{f}: {why}" for f, why in errors.items()),
                               {"errors": errors}) from None
    workflow.save(update_fields=list(data))
    return workflow
