"""Admin forms of workflows: the workflow's settings and the "Register a workflow" page.

They parse and show errors; the rules themselves are the services' (``config_validate``,
``workflow_upload``), so the admin refuses exactly what any other caller would.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.core.exceptions import ApplicationError
from apps.workflows.models import Workflow
from apps.workflows.services.config import config_validate

MAX_SOURCE_BYTES = 1_000_000  # as the REST API's upload


class IndentedJSONField(forms.JSONField):
    """A JSON textarea that shows the stored value indented, one setting per line."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value  # what the person typed, to correct it
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class WorkflowForm(forms.ModelForm):
    config = IndentedJSONField(
        required=False, label="Config", widget=forms.Textarea(attrs={"rows": 10, "cols": 80}),
        help_text='Keys that name a secret (token, secret, password, key, credential...) '
                  'take only {"$env": "NAME"}; rename a key that sounds like one but is not.')

    class Meta:
        model = Workflow
        fields = ["name", "description", "default_budget_usd", "default_budget_tokens",
                  "config"]

    def clean_config(self) -> dict[str, Any]:
        value = self.cleaned_data.get("config")
        if value is None:  # an emptied textarea: no settings
            return {}
        try:
            return config_validate(value)
        except ApplicationError as exc:
            raise ValidationError([f"{path}: {why}" if path != "config" else why
                                   for path, why in exc.extra["errors"].items()]) from None


class WorkflowRegisterForm(forms.Form):
    file = forms.FileField(required=False, label="Script file",
                           help_text="A workflow script (.py, UTF-8).")
    source = forms.CharField(
        required=False, strip=False, max_length=MAX_SOURCE_BYTES, label="Or paste the source",
        widget=forms.Textarea(attrs={"rows": 20, "cols": 100, "spellcheck": "false"}))
    file_name = forms.CharField(
        required=False, max_length=200, label="File name",
        help_text="For pasted source: names the script in errors and tracebacks, and gives "
                  "the slug when the script sets no module-level name.")
    slug = forms.SlugField(
        required=False, max_length=100,
        help_text="Default: the script's module-level name, else the file name.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        upload, pasted = data.get("file"), data.get("source")
        if upload and pasted:
            raise ValidationError("Upload a file or paste the source, not both.")
        if upload:
            data["source"] = self._read(upload)
            data["file_name"] = PurePath(upload.name).name
        elif not pasted or not pasted.strip():
            raise ValidationError("Upload a script file or paste its source.")
        else:
            # Browsers send a textarea's lines ending in CRLF; the same script as a file
            # must be the same source (and sha256, so the same version).
            data["source"] = pasted.replace("\r\n", "\n")
        data["file_name"] = PurePath(data.get("file_name") or "").name or None
        data["slug"] = data.get("slug") or None
        return data

    def _read(self, upload: Any) -> str:
        if not upload.name.endswith(".py"):
            raise ValidationError({"file": "must be a Python script (.py)"})
        if upload.size > MAX_SOURCE_BYTES:
            raise ValidationError({"file": f"is over {MAX_SOURCE_BYTES} bytes"})
        try:
            return upload.read().decode("utf-8-sig")  # -sig: drop a BOM some editors write
        except UnicodeDecodeError:
            raise ValidationError({"file": "is not UTF-8 text"}) from None
