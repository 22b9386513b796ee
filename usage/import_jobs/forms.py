"""The Import page's form: a file and its format (by default, from its extension)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from usage.forms import StyledForm
from usage.importers import ImportFormat, format_for

AUTO = "auto"
FORMAT_CHOICES = [
    (AUTO, "From the file name (.csv, .jsonl, .ndjson; .json is a console export)"),
    (ImportFormat.CSV.value, "CSV with a header row"),
    (ImportFormat.JSONL.value, "JSON lines of ingestion records"),
    (ImportFormat.NEWAPI.value, "New API console log rows (JSON lines, JSON array or API response)"),
]


class ImportForm(StyledForm):
    file = forms.FileField(
        label="File", help_text="It streams to disk as it arrives; the import starts once it is all there."
    )
    format = forms.ChoiceField(label="Format", choices=FORMAT_CHOICES, initial=AUTO)

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
                {"format": f"{upload.name!r} has no extension that names a format: choose CSV, JSON lines or New API."}
            )
        data["import_format"] = detected
        return data
