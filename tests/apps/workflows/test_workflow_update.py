"""workflow_update: the hand-edited settings of a workflow, all or nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.core.exceptions import ApplicationError
from apps.workflows.models import Workflow
from apps.workflows.services.edits import workflow_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def workflow() -> Workflow:
    return Workflow.objects.create(slug="orders", name="Orders", config={"tone": "warm"})


def stored(workflow: Workflow) -> tuple:
    row = Workflow.objects.get(pk=workflow.pk)
    return row.name, row.default_budget_usd, row.config


def test_the_given_fields_are_saved(workflow):
    workflow_update(workflow=workflow, data={
        "name": "Order desk", "default_budget_usd": Decimal("0.5"),
        "config": {"slack": {"token": {"$env": "SLACK_TOKEN"}}}})

    assert stored(workflow) == ("Order desk", Decimal("0.5"),
                                {"slack": {"token": {"$env": "SLACK_TOKEN"}}})


def test_a_plain_secret_refuses_the_whole_edit(workflow):
    with pytest.raises(ApplicationError) as refused:
        workflow_update(workflow=workflow, data={"name": "New",
                                                 "config": {"api_key": "abc"}})

    assert list(refused.value.extra["errors"]) == ["config.api_key"]
    assert stored(workflow) == ("Orders", None, {"tone": "warm"})
    assert workflow.name == "Orders"


def test_a_budget_of_zero_is_refused_and_nothing_saved(workflow):
    with pytest.raises(ApplicationError) as refused:
        workflow_update(workflow=workflow, data={"name": "New",
                                                 "default_budget_usd": Decimal("0")})

    assert list(refused.value.extra["errors"]) == ["default_budget_usd"]
    assert stored(workflow) == ("Orders", None, {"tone": "warm"})
    assert workflow.name == "Orders"


@pytest.mark.parametrize("field", ["slug", "active_version", "webhook_nonce"])
def test_fields_that_come_from_registration_are_not_editable(workflow, field):
    with pytest.raises(ApplicationError) as refused:
        workflow_update(workflow=workflow, data={field: "x"})

    assert refused.value.extra["errors"] == {field: "not editable"}
    assert Workflow.objects.get(pk=workflow.pk).slug == "orders"
