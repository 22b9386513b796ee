"""The Import page's upload handler: the file part is written chunk by chunk into
IMPORT_UPLOAD_DIR, counted as it comes, and refused past IMPORT_MAX_UPLOAD_MB."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

FILE_FIELD = "file"
CHUNK_BYTES = 1 << 20


def upload_limit_bytes() -> int:
    return settings.IMPORT_MAX_UPLOAD_MB * 1024 * 1024


def too_large_message() -> str:
    return (
        f"The file is larger than {settings.IMPORT_MAX_UPLOAD_MB:,} MB, the largest the Import page takes. "
        "Split it into smaller files, or import it with manage.py import_usage."
    )


class StoredUpload(UploadedFile):
    """An uploaded file already on disk at `path` (request.FILES holds it like any upload)."""

    def __init__(self, path: Path, name: str, size: int, content_type: str | None) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.path = path

    def open(
        self, mode: str | None = "rb", *args: Any, **kwargs: Any
    ) -> StoredUpload:  # a file on disk: only the mode means something
        mode = mode or "rb"
        self.file = self.path.open(mode)
        return self

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class ImportUploadHandler(FileUploadHandler):
    """Writes the `file` field to IMPORT_UPLOAD_DIR in chunks; other file fields are dropped."""

    chunk_size = CHUNK_BYTES

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = upload_limit_bytes()
        self.too_large = False
        self.path: Path | None = None
        self.out: BinaryIO | None = None
        self.received = 0

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != FILE_FIELD or self.path is not None:
            return
        directory = Path(settings.IMPORT_UPLOAD_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{uuid.uuid4().hex}.upload"
        self.out = self.path.open("xb")
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.out is None or self.field_name != FILE_FIELD:
            return None  # not the import's file: dropped
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            self.upload_interrupted()
            # Read on to the end of the body (without keeping it) so that the page can answer.
            raise StopUpload(connection_reset=False)
        self.out.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> StoredUpload | None:
        if self.out is None or self.path is None or self.field_name != FILE_FIELD:
            return None
        self.out.close()
        self.out = None
        return StoredUpload(self.path, self.file_name or "upload", self.received, self.content_type)

    def upload_interrupted(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
