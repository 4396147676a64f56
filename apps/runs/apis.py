"""REST API of runs (README "REST API"): list, show, resume, cancel, approve, reject.

Parse, call the same services as the CLI and the admin, serialize. A run the request
continues (resume, approve) goes to the background dispatcher or the broker, never this
thread. A service's refusal because of the run's state (``Conflict``) answers 409.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from apps.core.api import StrictSerializer, errors
from apps.core.exceptions import ApplicationError, Conflict
from apps.runs.models import Run, RunBudget, StepRun
from apps.runs.selectors import run_detail, run_query, run_steps
from apps.runs.services import runs as run_services
from apps.workflows.models import Workflow
from flowops.usage import UsageLimits

TAG = ["runs"]
USD_MAX = Decimal("999999.99999999")  # the ledger's 14 digits with 8 decimals: below 1,000,000


# -- input -------------------------------------------------------------------------------
class BudgetInputSerializer(StrictSerializer):
    usd = serializers.DecimalField(
        max_digits=14, decimal_places=8, min_value=Decimal("0.00000001"), max_value=USD_MAX,
        required=False, allow_null=True, coerce_to_string=True,
        error_messages={"min_value": "must be greater than 0",
                        "max_value": "must be less than 1000000",
                        "max_whole_digits": "must be less than 1000000",
                        "max_decimal_places": "at most 8 decimal places (the ledger's unit)",
                        "max_digits": "must be less than 1000000, with at most 8 decimal "
                                      "places"},
        help_text='Most the run may spend in USD, > 0 and < 1,000,000, at most 8 decimals. '
                  'A string ("0.50") keeps it exact.')
    tokens = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, required=False, allow_null=True,
        help_text="Most tokens (prompt plus completion), 1 to 2^63-1.")


def limits_of(budget: dict[str, Any] | None) -> UsageLimits | None:
    if not budget or (budget.get("usd") is None and budget.get("tokens") is None):
        return None
    return UsageLimits(total_cost_usd_limit=budget.get("usd"),
                       total_tokens_limit=budget.get("tokens"))


def parsed(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# -- output ------------------------------------------------------------------------------
MONEY = {"max_digits": 14, "decimal_places": 8, "coerce_to_string": True,
         "normalize_output": True}


class SpendOutputSerializer(serializers.Serializer):
    usd = serializers.DecimalField(**MONEY, help_text="Spent so far (a decimal string).")
    tokens = serializers.IntegerField()
    limit_usd = serializers.DecimalField(**MONEY, allow_null=True)
    limit_tokens = serializers.IntegerField(allow_null=True)
    unsettled_usd = serializers.DecimalField(
        **MONEY, help_text="Held for calls in flight, not yet settled.")
    unsettled_tokens = serializers.IntegerField()


class StepOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=StepRun.Status.choices)
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    output = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True, help_text="{type, message, traceback}")
    cost_usd = serializers.DecimalField(**MONEY)
    tokens = serializers.IntegerField()
    cache_hit = serializers.BooleanField()
    decided_by = serializers.CharField(
        allow_null=True, help_text="Who approved or rejected a human step: slack:<user id>, "
                                   "api:<username>, admin:<username>, cli:<os user>.")


class EventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField(help_text="api, slack, webhook, schedule")
    key = serializers.CharField(help_text="Its idempotency key.")
    received_at = serializers.DateTimeField()


class TriggerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    integration = serializers.CharField()
    event = serializers.CharField()


class RunLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    resume = serializers.CharField()
    cancel = serializers.CharField()
    approve = serializers.CharField()
    reject = serializers.CharField()


class RunSummaryOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    workflow = serializers.CharField(help_text="The workflow's slug.")
    version = serializers.CharField(help_text="sha256 of the source the run is pinned to.")
    status = serializers.ChoiceField(choices=Run.Status.choices)
    error = serializers.JSONField(allow_null=True,
                                  help_text="{step_key, type, message} of what stopped it.")
    parent = serializers.CharField(allow_null=True, help_text="The run that started it.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    links = RunLinksSerializer()


class RunOutputSerializer(RunSummaryOutputSerializer):
    input = serializers.JSONField(allow_null=True)
    output = serializers.JSONField(allow_null=True)
    paused_step_key = serializers.CharField(allow_null=True,
                                            help_text="The step waiting for approval.")
    pause_message = serializers.CharField(allow_null=True)
    waiting_on = serializers.CharField(allow_null=True,
                                       help_text="The child run this run waits for.")
    spend = SpendOutputSerializer()
    steps = StepOutputSerializer(many=True)
    event = EventOutputSerializer(allow_null=True, help_text="The event that started it.")
    trigger = TriggerOutputSerializer(allow_null=True)


def run_links(run_id: str) -> dict[str, str]:
    links = {"self": reverse("api-run", args=[run_id])}
    for action in ("resume", "cancel", "approve", "reject"):
        links[action] = reverse(f"api-run-{action}", args=[run_id])
    return links


def run_summary(run: Run) -> dict[str, Any]:
    return {"id": run.id, "workflow": run.version.workflow.slug, "version": run.version.sha256,
            "status": run.status, "error": run.error or None, "parent": run.parent_id,
            "created_at": run.created_at, "started_at": run.started_at,
            "finished_at": run.finished_at, "links": run_links(run.id)}


def spend_document(budget: RunBudget | None) -> dict[str, Any]:
    if budget is None:
        return {"usd": 0, "tokens": 0, "limit_usd": None, "limit_tokens": None,
                "unsettled_usd": 0, "unsettled_tokens": 0}
    return {"usd": budget.spent_usd, "tokens": budget.spent_tokens,
            "limit_usd": budget.limit_usd, "limit_tokens": budget.limit_tokens,
            "unsettled_usd": budget.reserved_usd, "unsettled_tokens": budget.reserved_tokens}


def step_document(step: StepRun) -> dict[str, Any]:
    return {"key": step.key, "name": step.name, "kind": step.kind, "status": step.status,
            "attempts": step.attempt + step.retries, "started_at": step.started_at,
            "finished_at": step.finished_at, "duration_ms": step.duration_ms,
            "output": step.output, "error": step.error, "cost_usd": step.cost_usd,
            "tokens": step.tokens, "cache_hit": step.cache_hit,
            "decided_by": step.decided_by or None}


def run_output(run_id: str) -> dict[str, Any]:
    """The run as it is now in the database (a service may have just changed it)."""
    run = run_detail(run_id)
    budget = RunBudget.objects.filter(run_id=run.id).first()
    return RunOutputSerializer({
        **run_summary(run), "input": run.input, "output": run.output,
        "paused_step_key": run.paused_step_key or None,
        "pause_message": run.pause_message or None, "waiting_on": run.waiting_on or None,
        "spend": spend_document(budget), "steps": [step_document(s) for s in run_steps(run)],
        "event": run.event, "trigger": run.trigger}).data


def get_run(run_id: str) -> Run:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No run with id {run_id!r}.")
    return run


# -- list --------------------------------------------------------------------------------
MAX_LIMIT = 200


class RunListQuerySerializer(StrictSerializer):
    workflow = serializers.CharField(required=False, help_text="A workflow's slug.")
    status = serializers.ChoiceField(choices=Run.Status.choices, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=50)
    offset = serializers.IntegerField(min_value=0, max_value=2**63 - 1, default=0)

    def validate_workflow(self, slug: str) -> str:
        if not Workflow.objects.filter(slug=slug).exists():
            raise serializers.ValidationError(f"no workflow named {slug!r}")
        return slug


class RunPageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Runs matching the filters, on all pages.")
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = RunSummaryOutputSerializer(many=True)


def query_params(request: Request) -> dict[str, Any]:
    # Repeated parameters would be silently cut to their last value; refuse them instead.
    repeated = [key for key in request.query_params if len(request.query_params.getlist(key)) > 1]
    if repeated:
        raise ApplicationError(f"{repeated[0]}: given more than once",
                               {"errors": {key: "given more than once" for key in repeated}})
    return parsed(RunListQuerySerializer, request.query_params.dict())


def page_links(request: Request, limit: int, offset: int, count: int) -> tuple[Any, Any]:
    url = request.build_absolute_uri()
    following = replace_query_param(url, "offset", offset + limit) \
        if offset + limit < count else None
    previous = replace_query_param(url, "offset", max(offset - limit, 0)) if offset else None
    return following, previous


class RunListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAG, operation_id="runs_list", description="Runs, newest first.",
        parameters=[
            OpenApiParameter("workflow", OpenApiTypes.STR, description="Only this workflow's "
                             "runs (its slug); an unknown slug is a 400."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=Run.Status.values,
                             description="Only runs in this status."),
            OpenApiParameter("limit", OpenApiTypes.INT,
                             description=f"Runs per page, 1 to {MAX_LIMIT} (default 50)."),
            OpenApiParameter("offset", OpenApiTypes.INT, description="Runs to skip."),
        ],
        responses={200: RunPageSerializer, **errors(400, 401)})
    def get(self, request: Request) -> Response:
        params = query_params(request)
        runs = run_query(workflow_slug=params.get("workflow"), status=params.get("status"))
        limit, offset = params["limit"], params["offset"]
        count = runs.count()
        following, previous = page_links(request, limit, offset, count)
        page = [run_summary(r) for r in runs[offset:offset + limit]]
        return Response(RunPageSerializer({
            "count": count, "limit": limit, "offset": offset, "next": following,
            "previous": previous, "results": page}).data)


# -- one run and what can be done to it ---------------------------------------------------
class RunDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=TAG, responses={200: RunOutputSerializer, **errors(401, 404)},
                   description="Status, input, output, error, steps (status, attempts, "
                               "timings, errors), spend and limits, and where it came from.")
    def get(self, request: Request, run_id: str) -> Response:
        return Response(run_output(get_run(run_id).id))


class RunActionApi(APIView):
    """A POST that calls one run service; 409 when the run's state refuses it."""

    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]
    input_serializer: type[serializers.Serializer] = StrictSerializer

    def post(self, request: Request, run_id: str) -> Response:
        run = get_run(run_id)
        fields = parsed(self.input_serializer, request.data)
        self.act(run, fields)
        return Response(run_output(run.id))

    def act(self, run: Run, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def decider(self) -> str:
        return f"api:{self.request.user.get_username()}"


def action_schema(summary: str, request: type[serializers.Serializer] | None = None):
    return extend_schema(tags=TAG, request=request, description=summary,
                         responses={200: RunOutputSerializer, **errors(400, 401, 404, 409)})


class RunResumeInputSerializer(StrictSerializer):
    budget = BudgetInputSerializer(
        required=False, allow_null=True,
        help_text="New absolute limits, at least what the run has spent and holds.")


class RunResumeApi(RunActionApi):
    input_serializer = RunResumeInputSerializer

    @action_schema("Continue a failed, halted, dead or stalled run from its checkpoints.",
                   RunResumeInputSerializer)
    def post(self, request: Request, run_id: str) -> Response:
        return super().post(request, run_id)

    def act(self, run: Run, fields: dict[str, Any]) -> None:
        try:
            run_services.run_resume(run_id=run.id, limits=limits_of(fields.get("budget")),
                                    background=True)
        except ApplicationError as exc:
            raise in_api_terms(exc) from None


def in_api_terms(exc: ApplicationError) -> ApplicationError:
    """The budget service names the CLI's options; name the API's fields instead."""
    field = {"budget_usd": "budget.usd", "budget_tokens": "budget.tokens"}.get(
        exc.extra.get("field"))
    if field is None:
        return exc
    message = exc.message.replace(f"--{exc.extra['field'].replace('_', '-')}", field)
    return ApplicationError(message, {"errors": {field: message}})


class RunCancelApi(RunActionApi):
    @action_schema("Cancel a run that has not ended; its pending steps are cancelled.")
    def post(self, request: Request, run_id: str) -> Response:
        return super().post(request, run_id)

    def act(self, run: Run, fields: dict[str, Any]) -> None:
        run_services.run_cancel(run_id=run.id)


class RunApproveInputSerializer(StrictSerializer):
    input = serializers.JSONField(required=False, allow_null=True,
                                  help_text="Becomes the paused step's output; it must fit "
                                            "the step's input_schema.")


class RunApproveApi(RunActionApi):
    input_serializer = RunApproveInputSerializer

    @action_schema("Approve a run paused at a human step and continue it.",
                   RunApproveInputSerializer)
    def post(self, request: Request, run_id: str) -> Response:
        return super().post(request, run_id)

    def act(self, run: Run, fields: dict[str, Any]) -> None:
        try:
            run_services.run_approve(run_id=run.id, input=fields.get("input"),
                                     background=True, decided_by=self.decider())
        except Conflict:
            raise
        except ApplicationError as exc:  # the input does not fit the step's schema
            raise ApplicationError(exc.message, {"errors": {"input": exc.message}}) from None


class RunRejectInputSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000,
                                   help_text='The run fails with "rejected: <reason>".')


class RunRejectApi(RunActionApi):
    input_serializer = RunRejectInputSerializer

    @action_schema("Reject a run paused at a human step: it fails.", RunRejectInputSerializer)
    def post(self, request: Request, run_id: str) -> Response:
        return super().post(request, run_id)

    def act(self, run: Run, fields: dict[str, Any]) -> None:
        run_services.run_reject(run_id=run.id, reason=fields["reason"],
                                decided_by=self.decider())
