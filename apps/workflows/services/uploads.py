"""Source uploaded through the REST API becomes a registered workflow version.

Uploading is code execution on the web process and the workers (CONTRACTS.md §4), so the
API lets only staff call this.
"""

from __future__ import annotations

from apps.core.exceptions import ApplicationError
from apps.workflows.services.registry import Registered, workflow_register_source
from apps.workflows.services.versions import load_source, source_sha256


def upload_origin(source: str) -> str:
    # One name per source: it is the module's file name for tracebacks and
    # inspect.getsource (Step.cached hashes it), so two uploads must never share it.
    return f"<upload {source_sha256(source)[:12]}>"


def workflow_upload(*, source: str, slug: str | None = None) -> Registered:
    """Check and register uploaded source; ``slug`` defaults to the script's ``name``.

    Raises ``ScriptError`` (with the line) for a script that does not load.
    """
    origin = upload_origin(source)
    loaded = load_source(source, origin=origin)  # loaded once: registration reuses it by hash
    name = getattr(loaded.module, "name", None)
    if slug is None and not (isinstance(name, str) and name.strip()):
        raise ApplicationError(
            "slug: give a slug, or set a module-level name in the script",
            {"errors": {"slug": "required when the script sets no module-level name"}})
    return workflow_register_source(source, origin=origin, slug=slug)
