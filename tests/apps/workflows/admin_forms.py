"""What a browser posts when it saves an admin change page: the form as shown, each
inline's management form, and the fields a test changes. Tests built from the page keep
working when an inline is added to it."""

from __future__ import annotations

from typing import Any

from django.test import Client


def change_form_data(client: Client, url: str, **changes: Any) -> dict[str, Any]:
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    form = page.context["adminform"].form
    data = {name: _posted(form[name].value()) for name in form.fields}
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value()
                     for name in management.fields})
    data.update(changes)
    return data


def _posted(value: Any) -> Any:
    return "" if value is None else value
