"""Files the harness writes for people to read: whole or not at all, and a one-line error."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from harness.errors import InputError


def write_file(path: str | Path, data: str | bytes, *, field: str | None = None) -> Path:
    """Write `data` to `path` through a temporary name in the same folder and a rename, so a
    reader (a browser, a CI step) sees the old file or the new one, never half of one. A
    folder that cannot be made or written is an InputError naming the path (and the option
    `field` that chose it)."""
    path = Path(path)
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise InputError(f"cannot write: {blocker} is a file, not a folder", file=str(path), field=field)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write: {err.strerror or err}", file=str(path),
                         field=field) from None
    return path


def file_in_the_way(path: Path) -> Path | None:
    """The file, if any, where a folder above `path` should be (mkdir would say 'File exists')."""
    return next((parent for parent in Path(path).parents if parent.exists() and not parent.is_dir()),
                None)


def as_typed(path: Path) -> str:
    """A path as a user in the current folder would type it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
