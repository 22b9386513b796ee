"""Forms that show their errors in place, the same way on every page.

- `ErrorsInPlace` (a form mixin): after validation the first invalid field (in the form's
  order) carries `autofocus`, so focus lands on it whether the whole page was rendered (no
  JavaScript) or htmx swapped the form (htmx focuses `[autofocus]` in swapped content); with
  only form-wide errors, the summary takes focus. `error_summary` lists every error with a link
  to its field, for `partials/form_errors.html` at the top of the form.
- `form_saved` / `form_invalid`: POST-redirect-GET on success (for htmx an HX-Redirect, so the
  page reloads at its own URL with the message); on failure the page again with the form and its
  errors (400) or, for htmx, only the form's partial (422, which the htmx configuration in
  base.html swaps like a success).

Every form posts to the URL of the page it is on (or a URL that is a page too), so the address
bar never keeps an endpoint that only answers POST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect

from toki_dashboard.htmx import wants_fragment

INVALID_FRAGMENT_STATUS = 422  # htmx swaps it (base.html's responseHandling); a page answer says 400


@dataclass(frozen=True)
class ErrorItem:
    href: str  # "#<input id>", or "" for a form-wide error
    text: str


def is_group(widget: forms.Widget) -> bool:
    """A widget of several checkboxes under one label, shown in a fieldset."""
    return isinstance(widget, forms.CheckboxSelectMultiple)


class ErrorsInPlace:
    """Mixin for Form and ModelForm (first in the bases): focus and a summary for the errors."""

    fields: dict[str, Any]
    errors: Any

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        self._focus_first_invalid()

    def add_error(self, field: str | None, error: Any) -> None:
        # Also after validation: a view adds what a service refused.
        super().add_error(field, error)  # type: ignore[misc]
        if hasattr(self, "cleaned_data"):
            self._focus_first_invalid()

    def _focus_first_invalid(self) -> None:
        first = self.first_invalid
        for name, field in self.fields.items():
            attrs = {key: value for key, value in field.widget.attrs.items() if key != "autofocus"}
            # A group of checkboxes or radios: its fieldset takes focus (partials/form_field.html),
            # or every box of the group would carry autofocus.
            focus = name == first and not is_group(field.widget)
            field.widget.attrs = attrs | ({"autofocus": True} if focus else {})

    @property
    def first_invalid(self) -> str | None:
        """The name of the first visible field with an error, in the form's order."""
        for name, field in self.fields.items():
            if name in self.errors and not field.widget.is_hidden:
                return name
        return None

    @property
    def error_summary(self) -> list[ErrorItem]:
        items = [ErrorItem("", str(error)) for error in self.non_field_errors()]  # type: ignore[attr-defined]
        for name, field in self.fields.items():
            if name not in self.errors:
                continue
            bound = self[name]  # type: ignore[index]
            label = field.label or name.replace("_", " ").capitalize()
            # A group of checkboxes has no one input to point at: its fieldset (partials/form_field.html).
            target = f"{bound.auto_id}_group" if is_group(field.widget) else bound.id_for_label
            href = "" if field.widget.is_hidden else f"#{target}"
            items.extend(ErrorItem(href, f"{label}: {error}") for error in self.errors[name])
        return items


def form_saved(request: HttpRequest, url: str) -> HttpResponse:
    """After a successful POST: the page at `url` (a redirect, or an HX-Redirect for htmx)."""
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def form_invalid(request: HttpRequest, page: str, fragment: str, context: dict[str, Any]) -> HttpResponse:
    """After an invalid POST: the page with the form and its errors (400), or for htmx only the
    form's partial, swapped in place of the form (422)."""
    if wants_fragment(request):
        response = render(request, fragment, context, status=INVALID_FRAGMENT_STATUS)
    else:
        response = render(request, page, context, status=400)
    patch_vary_headers(response, ("HX-Request",))
    return response
