"""Which files an ingestion reads: the files named or found under folders, and an upload's name checked.
Knows nothing about indexes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from assistant.errors import InputError

from .readers import supported_suffixes
from .types import FileError, IngestReport

_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f\ud800-\udfff]")
MAX_NAME_BYTES = 255


def upload_name(filename: str) -> str:
    """An uploaded file's name, refused (InputError) unless it is a plain file name: no folder part,
    no '..', no control characters, at most 255 bytes.  Uploads are never written under this name,
    but it becomes the document's source and is shown in the admin area."""
    name = str(filename or "")
    if not name.strip(". ") or _UNSAFE_NAME.search(name) or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InputError(f"upload {name[:80]!r}: the file name must be a plain name (no folders, '/', '\\', "
                         f"'..' or control characters, at most {MAX_NAME_BYTES} bytes); rename the file")
    return name


def expand(paths: Sequence[str | Path], report: IngestReport, exclude: Path) -> list[Path]:
    """Files named or found under folders (hidden files and the index folder itself skipped)."""
    files: list[Path] = []
    exclude = exclude.expanduser().resolve()
    suffixes = set(supported_suffixes())
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in p.relative_to(path).parts)
                           and exclude not in p.resolve().parents)
            if not found:
                report.errors.append(FileError(str(path), f"folder has no files of a supported type ({', '.join(sorted(suffixes))})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            report.errors.append(FileError(str(path), "does not exist; check the path"))
    return files


def reason(exc: Exception, source: str) -> str:
    text = str(exc)
    prefix = source + ": "
    return text[len(prefix):] if text.startswith(prefix) else text
