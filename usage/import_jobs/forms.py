"""The Import page's form: a file and its format (by default, from its extension)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_lazy

from usage.forms import StyledForm
from usage.importers import ImportFormat, format_for

AUTO = "auto"
FORMAT_CHOICES = [
    (AUTO, gettext_lazy("From the file name (.csv, .jsonl, .ndjson; .json is a console export)")),
    (ImportFormat.CSV.value, gettext_lazy("CSV with a header row")),
    (ImportFormat.JSONL.value, gettext_lazy("JSON lines of ingestion records")),
    (ImportFormat.NEWAPI.value, gettext_lazy("New API console log rows (JSON lines, JSON array or API response)")),
]


class ImportForm(StyledForm):
    file = forms.FileField(
        label=gettext_lazy("File"),
        help_text=gettext_lazy("It streams to disk as it arrives; the import starts once it is all there."),
    )
    format = forms.ChoiceField(label=gettext_lazy("Format"), choices=FORMAT_CHOICES, initial=AUTO)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        upload = data.get("file")
        chosen = data.get("format")
        if upload is None or not chosen:
            return data
        if chosen != AUTO:
            data["import_format"] = ImportFormat(chosen)
            return data
        name = PurePath(upload.name)
        detected = ImportFormat.NEWAPI if name.suffix.lower() == ".json" else format_for(name)
        if detected is None:
            raise ValidationError(
                {
                    "format": gettext(
                        "%(name)s has no extension that names a format: choose CSV, JSON lines or New API."
                    )
                    % {"name": repr(upload.name)}
                }
            )
        data["import_format"] = detected
        return data
