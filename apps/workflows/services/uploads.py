"""Source uploaded through the REST API becomes a registered workflow version.

Uploading is code execution on the web process and the workers (CONTRACTS.md §4), so the
API lets only staff call this.
"""

from __future__ import annotations

from pathlib import PurePath

from apps.core.exceptions import ApplicationError
from apps.workflows.services.registry import Registered, workflow_register_source
from apps.workflows.services.versions import load_source, source_sha256


def upload_origin(source: str, filename: str | None = None) -> str:
    # One name per source: it is the module's file name for tracebacks and
    # inspect.getsource (Step.cached hashes it), so two uploads must never share it, even
    # two different sources uploaded as the same file name.
    sha = source_sha256(source)[:12]
    return f"<upload {sha} {filename}>" if filename else f"<upload {sha}>"


def workflow_upload(*, source: str, slug: str | None = None,
                    filename: str | None = None) -> Registered:
    """Check and register uploaded source; ``slug`` defaults to the script's ``name``,
    else to the stem of ``filename`` (the uploaded file's name, if there was one).

    Raises ``ScriptError`` (with the line) for a script that does not load.
    """
    origin = upload_origin(source, filename)
    loaded = load_source(source, origin=origin)  # loaded once: registration reuses it by hash
    name = getattr(loaded.module, "name", None)
    if slug is None and not filename and not (isinstance(name, str) and name.strip()):
        raise ApplicationError(
            "slug: give a slug, or set a module-level name in the script",
            {"errors": {"slug": "required when the script sets no module-level name"}})
    default_slug = PurePath(filename).stem if filename else "workflow"
    return workflow_register_source(source, origin=origin, slug=slug, default_slug=default_slug)
