"""Workflow services: versions (pinning and loading source), registration, events."""

from apps.workflows.services.versions import (
    LoadedWorkflow,
    load_source,
    load_version,
    read_script,
    register_live,
    slug_for,
    source_sha256,
    workflow_version_from_path,
    workflow_version_get_or_create,
)

__all__ = [
    "LoadedWorkflow",
    "load_source",
    "load_version",
    "read_script",
    "register_live",
    "slug_for",
    "source_sha256",
    "workflow_version_from_path",
    "workflow_version_get_or_create",
]
