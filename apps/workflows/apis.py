"""REST API of workflows (README "REST API"): list, show, upload source, start a run.

Starting a run stores the request as an event and answers 202; the run is driven by the
background dispatcher or the workers, never in the request. Uploading source is code
execution on the servers (CONTRACTS.md §4), so it is for staff only.
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ErrorOutputSerializer, StaffWrites, StrictSerializer, errors
from apps.core.exceptions import ApplicationError
from apps.runs.apis import BudgetInputSerializer, RunOutputSerializer, limits_of, parsed, run_output
from apps.workflows.models import Trigger, Workflow, WorkflowVersion
from apps.workflows.services.registry import Registered
from apps.workflows.services.starts import workflow_run_request
from apps.workflows.services.uploads import workflow_upload
from flowops._codec import digest
from flowops.exceptions import ScriptError

TAG = ["workflows"]
KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII: a UUID, a hash, an order id


# -- output ------------------------------------------------------------------------------
class VersionOutputSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    kind = serializers.ChoiceField(choices=["script", "pipeline"],
                                   help_text="script: `def run(context)`; pipeline: steps.")
    origin_path = serializers.CharField(help_text="Where the source was read from.")
    created_at = serializers.DateTimeField()


class WorkflowTriggerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    integration = serializers.ChoiceField(choices=Trigger.Integration.choices)
    event = serializers.CharField()
    options = serializers.JSONField()
    line = serializers.IntegerField(allow_null=True)


class WorkflowOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    active_version = VersionOutputSerializer(
        allow_null=True, help_text="What new runs execute (else the latest version).")
    triggers = WorkflowTriggerOutputSerializer(many=True,
                                               help_text="The active version's triggers.")
    created_at = serializers.DateTimeField()
    links = serializers.DictField(child=serializers.CharField(),
                                  help_text="self, and runs (POST there to start one).")


def version_output(version: WorkflowVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"sha256": version.sha256, "kind": "script" if version.entry == "run" else "pipeline",
            "origin_path": version.origin_path, "created_at": version.created_at}


def workflow_output(workflow: Workflow) -> dict[str, Any]:
    version = workflow.active_version or workflow.versions.order_by("-created_at").first()
    triggers = Trigger.objects.filter(workflow=workflow, active=True).order_by("id")
    return WorkflowOutputSerializer({
        "slug": workflow.slug, "name": workflow.name, "description": workflow.description,
        "active_version": version_output(version), "triggers": triggers,
        "created_at": workflow.created_at,
        "links": {"self": reverse("api-workflow", args=[workflow.slug]),
                  "runs": reverse("api-workflow-runs", args=[workflow.slug])}}).data


def get_workflow(slug: str) -> Workflow:
    workflow = Workflow.objects.select_related("active_version").filter(slug=slug).first()
    if workflow is None:
        raise NotFound(f"No workflow named {slug!r}.")
    return workflow


# -- list and upload ---------------------------------------------------------------------
class WorkflowUploadInputSerializer(StrictSerializer):
    source = serializers.CharField(trim_whitespace=False, max_length=1_000_000,
                                   help_text="The script's Python source.")
    slug = serializers.RegexField(
        r"^[a-z0-9_-]+$", max_length=100, required=False, allow_null=True,
        error_messages={"invalid": "lowercase letters, digits, - and _ only"},
        help_text="Default: the script's module-level `name`.")


SCRIPT_ERROR = OpenApiResponse(
    response=ErrorOutputSerializer,
    description="The script does not load: `errors.source` names the line and the reason "
                "(also as `line` and `reason`).")


def script_refused(exc: ScriptError) -> ApplicationError:
    reason = str(exc)
    where = f"{exc.path or ''}:{exc.line}" if exc.line is not None else exc.path or ""
    if where and reason.startswith(f"{where}: "):
        reason = reason[len(where) + 2:]
    at = f"line {exc.line}: " if exc.line is not None else ""
    return ApplicationError(f"source: {at}{reason}", {
        "errors": {"source": f"{at}{reason}"}, "line": exc.line, "reason": reason})


class WorkflowListApi(APIView):
    permission_classes = [StaffWrites]
    parser_classes = [JSONParser]

    @extend_schema(tags=TAG, operation_id="workflows_list",
                   responses={200: WorkflowOutputSerializer(many=True), **errors(401)})
    def get(self, request: Request) -> Response:
        workflows = Workflow.objects.select_related("active_version").order_by("slug")
        return Response([workflow_output(w) for w in workflows])

    @extend_schema(tags=TAG, operation_id="workflows_upload", request=WorkflowUploadInputSerializer,
                   responses={201: WorkflowOutputSerializer, 400: SCRIPT_ERROR,
                              **errors(401, 403, 415)},
                   description="Staff only: register source as the workflow's active version "
                               "(its triggers replace the old ones). The source runs on the "
                               "servers when it is loaded.")
    def post(self, request: Request) -> Response:
        fields = parsed(WorkflowUploadInputSerializer, request.data)
        try:
            registered: Registered = workflow_upload(source=fields["source"],
                                                     slug=fields.get("slug"))
        except ScriptError as exc:
            raise script_refused(exc) from None
        return Response(workflow_output(get_workflow(registered.workflow.slug)), status=201)


class WorkflowDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=TAG, responses={200: WorkflowOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, slug: str) -> Response:
        return Response(workflow_output(get_workflow(slug)))


# -- start a run -------------------------------------------------------------------------
class RunStartInputSerializer(StrictSerializer):
    input = serializers.JSONField(
        required=False, allow_null=True,
        help_text="The first step's input (validated against its annotation); for a "
                  "FlowOps-style script, context.payload.")
    context = serializers.JSONField(required=False, help_text="Initial context fields "
                                                              "(a JSON object).")
    budget = BudgetInputSerializer(required=False, allow_null=True,
                                   help_text="Limits; each one left out comes from the "
                                             "workflow's default, then the script's.")

    def validate_context(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="1 to 128 visible ASCII characters, scoped to this workflow. The same key "
                "with the same body answers 200 with the run the first request started "
                "(header `Idempotent-Replayed: true`) and starts nothing; with a different "
                "body, 409.")


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not KEY.match(key):
        message = "must be 1 to 128 visible ASCII characters (no spaces)"
        raise ApplicationError(f"Idempotency-Key: {message}",
                               {"errors": {"Idempotency-Key": message}})
    return key


class WorkflowRunsApi(APIView):
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    @extend_schema(
        tags=TAG, request=RunStartInputSerializer, parameters=[IDEMPOTENCY_KEY],
        operation_id="workflows_runs_start",
        responses={202: RunOutputSerializer,
                   200: OpenApiResponse(RunOutputSerializer, description="The Idempotency-Key "
                                        "was seen with this body: the run it started."),
                   **errors(400, 401, 404, 409, 415)},
        description="Start the workflow's active version (else its latest). 202: the run is "
                    "queued; poll `links.self` until `status` is succeeded, failed, halted, "
                    "cancelled or paused.")
    def post(self, request: Request, slug: str) -> Response:
        workflow = get_workflow(slug)
        key = idempotency_key(request)
        body = request.data
        fields = parsed(RunStartInputSerializer, body)
        started = workflow_run_request(
            workflow=workflow, input=fields.get("input"), context_data=fields.get("context", {}),
            limits=limits_of(fields.get("budget")), body=body, body_hash=digest(body),
            idempotency_key=key)
        response = Response(run_output(started.run.id), status=200 if started.replayed else 202)
        response["Location"] = reverse("api-run", args=[started.run.id])
        if started.replayed:
            response["Idempotent-Replayed"] = "true"
        return response
